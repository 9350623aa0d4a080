"""``--fix`` / ``--diff`` / ``--unsafe-fixes``: source findings rewritten with libcst.

The round trip runs every bad example of a fixable rule through ``--fix`` and audits the
result again: no finding may be left, and only the marked lines (plus imports and inserted
``.eval()`` lines) may change, comments included.
"""
import difflib
import json
import shutil
import textwrap

import pytest

pytest.importorskip("libcst")

from evalguard.fixes import Site, fix_text

FIXABLE = ["EG105", "EG106", "EG301", "EG903"]


def _changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


@pytest.mark.parametrize("rule", FIXABLE)
def test_fix_round_trips_the_bad_example(rule, repo_root, tmp_path, run_cli):
    target = tmp_path / "bad.py"
    shutil.copy(repo_root / "examples" / "rules" / rule / "bad.py", target)
    before = target.read_text()
    marked = before.count(f"# [{rule}]")
    found = json.loads(run_cli("check", target, "--select", rule, "--format", "json")[1])["findings"]
    assert len(found) == marked > 0

    code, out, err = run_cli("check", target, "--select", rule, "--fix", "--unsafe-fixes", "--format", "json",
                             "--fail-on", "info")
    assert json.loads(out)["findings"] == [] and code == 0          # the fixed file re-checks clean
    assert f"fixed {marked} finding" in err
    after = target.read_text()
    removed, added = _changed_lines(before, after)
    assert removed or added
    assert all(f"# [{rule}]" in line or line.startswith("from ") for line in removed)
    assert after.count(f"# [{rule}]") == marked                     # trailing comments kept
    assert [line for line in before.splitlines() if line.lstrip().startswith("#")] == \
           [line for line in after.splitlines() if line.lstrip().startswith("#")]
    assert all(f"# [{rule}]" in line or line.startswith("from ") or line.strip().endswith(".eval()")
               for line in added)
    compile(after, str(target), "exec")


@pytest.mark.parametrize("rule,safe", [("EG105", 4), ("EG106", 0), ("EG301", 4), ("EG903", 0)])
def test_without_unsafe_fixes_only_safe_fixes_apply(rule, safe, repo_root, tmp_path, run_cli):
    target = tmp_path / "bad.py"
    shutil.copy(repo_root / "examples" / "rules" / rule / "bad.py", target)
    before = target.read_text()
    _, out, err = run_cli("check", target, "--select", rule, "--fix", "--format", "json")
    assert f"fixed {safe} finding" in err
    left = len(json.loads(out)["findings"])
    if safe:
        assert left == 0 and target.read_text() != before
    else:
        assert left > 0 and target.read_text() == before and "more with --unsafe-fixes" in err


def test_diff_prints_the_patch_and_writes_nothing(repo_root, tmp_path, run_cli):
    target = tmp_path / "bad.py"
    shutil.copy(repo_root / "examples" / "rules" / "EG301" / "bad.py", target)
    before = target.read_text()
    code, out, err = run_cli("check", target, "--select", "EG301", "--diff")
    assert code == 1 and target.read_text() == before
    assert "-from torch.optim import Adam as A\n+from torch.optim import AdamW\n" in out
    assert "+        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=WEIGHT_DECAY)" in out
    assert "would fix 4 findings in 1 file" in err
    clean = tmp_path / "good.py"
    shutil.copy(repo_root / "examples" / "rules" / "EG301" / "good.py", clean)
    assert run_cli("check", clean, "--select", "EG301", "--diff")[:2] == (0, "")


def _fix(source: str, rule: str, line: int, column: int, unsafe=False, evidence=None):
    return fix_text(textwrap.dedent(source), [Site(rule, line, column, evidence or {})], unsafe)


def test_adamw_import_is_added_when_adam_is_still_used():
    fixed = _fix("""\
        from torch.optim import Adam
        a = Adam(p, weight_decay=1e-2)
        b = Adam(q)
        """, "EG301", 2, 5)
    assert fixed.after == "from torch.optim import Adam, AdamW\na = AdamW(p, weight_decay=1e-2)\nb = Adam(q)\n"


def test_adamw_keeps_a_multiline_call_and_its_comments():
    fixed = _fix("""\
        import torch
        opt = torch.optim.Adam(
            params,  # the model's
            lr=1e-3,
            decoupled_weight_decay=False,
        )
        """, "EG301", 2, 7)
    assert fixed.after == textwrap.dedent("""\
        import torch
        opt = torch.optim.AdamW(
            params,  # the model's
            lr=1e-3,
            weight_decay=0.0,
        )
        """)


def test_nadam_gets_decoupled_weight_decay():
    fixed = _fix("import torch.optim as optim\nopt = optim.NAdam(p, weight_decay=1e-4, decoupled_weight_decay=False)\n",
                 "EG301", 2, 7)
    assert fixed.after.endswith("optim.NAdam(p, weight_decay=1e-4, decoupled_weight_decay=True)\n")


def test_weights_only_is_a_safe_fix_when_the_result_only_feeds_load_state_dict():
    source = """\
        import torch
        def restore(model, path):
            state = torch.load(path, weights_only=False)
            model.load_state_dict(state["model"])
        """
    fixed = _fix(source, "EG903", 3, 13)
    assert fixed.applied and "torch.load(path, weights_only=True)" in fixed.after
    returned = source + "    return state\n"
    fixed = _fix(returned, "EG903", 3, 13)
    assert fixed.unsafe_skipped and fixed.after == fixed.before


def test_functional_dropout_outside_a_method_has_no_fix():
    fixed = _fix("import torch.nn.functional as F\ny = F.dropout(x, 0.5)\n", "EG105", 2, 5)
    assert fixed.unfixable and fixed.after == fixed.before


def test_eval_is_inserted_above_the_comment_of_the_block():
    fixed = _fix("""\
        def serve(net, x):
            # no autograd here
            with torch.no_grad():
                return net(x)
        """, "EG106", 4, 16, unsafe=True)
    assert fixed.after == textwrap.dedent("""\
        def serve(net, x):
            # no autograd here
            net.eval()
            with torch.no_grad():
                return net(x)
        """)


def test_columns_after_non_ascii_text_are_counted_in_bytes(tmp_path, run_cli, monkeypatch):
    """The source rules report ast's byte columns; the fix and the caret still find the call."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "serve.py").write_text('import torch\nlabel = "modèle"; m = torch.load("m.pt", weights_only=False)\n'
                                       "model.load_state_dict(m)\n", encoding="utf-8")
    _, out, _ = run_cli("check", "serve.py", "--select", "EG903")
    assert '2 | label = "modèle"; m = torch.load("m.pt", weights_only=False)' in out
    assert "\n  | " + " " * len('label = "modèle"; m = ') + "^" * len("torch.load") + "\n" in out
    code, _, err = run_cli("check", "serve.py", "--select", "EG903", "--fix")
    assert code == 0 and "fixed 1 finding" in err
    assert 'torch.load("m.pt", weights_only=True)' in (tmp_path / "serve.py").read_text(encoding="utf-8")
