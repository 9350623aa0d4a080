"""Source rules EG105, EG201 (nn.Sequential literals), EG301, EG903 and the shared machinery.

Every snippet is audited through ``evalguard.checks.source.run`` exactly as the engine calls it.
"""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evalguard.checks.source.check import run
from evalguard.subject import AuditOptions, AuditSubject

ALL = frozenset({"EG105", "EG106", "EG201", "EG301", "EG903"})
REPO = Path(__file__).resolve().parent.parent


def audit(source: str, rules=ALL, path="snippet.py"):
    subject = AuditSubject(path=path, kind="python-source", source_text=textwrap.dedent(source))
    return list(run(subject, AuditOptions(selected=frozenset(rules))).findings)


def found(source: str, rules=ALL) -> list[tuple[int, str]]:
    return sorted((f.location.line, f.rule) for f in audit(source, rules))


# -- EG301 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("imports,call", [
    ("import torch", "torch.optim.Adam(params, lr=1e-3, weight_decay=0.01)"),
    ("from torch import optim", "optim.Adam(params, weight_decay=0.01)"),
    ("from torch.optim import Adam as A", "A(params, weight_decay=0.01)"),
    ("import torch.optim as o", "o.Adam(params, weight_decay=0.01)"),
    ("import torch.optim.adam", "torch.optim.adam.Adam(params, weight_decay=0.01)"),
    ("from torch.optim import *", "Adam(params, weight_decay=0.01)"),
    ("import torch\nOpt = torch.optim.Adam", "Opt(params, weight_decay=0.01)"),
    ("import functools, torch", "functools.partial(torch.optim.Adam, weight_decay=0.01)"),
    ("import torch", "torch.optim.Adam(params, 1e-3, (0.9, 0.999), 1e-8, 0.01)"),
    ("import torch", "torch.optim.RAdam(params, weight_decay=0.01)"),
])
def test_eg301_import_spellings(imports, call):
    source = f"{imports}\nparams = []\nopt = {call}\n"
    findings = audit(source, {"EG301"})
    line = source.count("\n", 0, source.index("opt =")) + 1
    assert [(f.rule, f.location.line, f.location.column) for f in findings] == [("EG301", line, 7)]
    assert findings[0].location.path == "snippet.py" and findings[0].severity is None


@pytest.mark.parametrize("source", [
    "import torch\ntorch.optim.AdamW(params, weight_decay=0.01)",
    "import torch\ntorch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)",
    "import torch\ntorch.optim.Adam(params, lr=1e-3)",
    "import torch\ntorch.optim.Adam(params, weight_decay=0.0)",
    "import torch\nWD = 0\ntorch.optim.Adam(params, weight_decay=WD)",
    "import torch\ntorch.optim.Adam(params, weight_decay=0.01, decoupled_weight_decay=True)",
    "import torch\ntorch.optim.NAdam(params, 2e-3, (0.9, 0.999), 1e-8, 0.01, 0.004, True)",
    "from mylib.optim import Adam\nAdam(params, weight_decay=0.01)",          # not torch's
    "import torch\ntorch.optim.Adam([{'params': a, 'weight_decay': 0.0}, {'params': b}])",
])
def test_eg301_fine(source):
    assert audit("params = a = b = []\n" + source, {"EG301"}) == []


def test_eg301_resolves_constants_and_kwargs():
    source = """\
    import torch
    BASE = 1e-3
    CFG = {"lr": 1e-3, "weight_decay": 10 * BASE}

    def build(params):
        wd = 2 * BASE
        a = torch.optim.Adam(params, weight_decay=wd)
        b = torch.optim.Adam(params, **CFG)
        return a, b
    """
    findings = audit(source, {"EG301"})
    assert [(f.location.line, f.evidence["weight_decay"]) for f in findings] == [(7, [0.002]), (8, [0.01])]
    assert all(f.evidence["value_known"] for f in findings)


def test_eg301_unknown_value_is_reported_as_unknown():
    source = """\
    import torch
    def build(params, args):
        return torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    """
    (finding,) = audit(source, {"EG301"})
    assert finding.evidence["value_known"] is False
    assert "args.weight_decay (value not known statically)" in finding.message


def test_eg301_hf_param_groups_count():
    source = """\
    import torch
    def build(model, args):
        no_decay = ["bias", "LayerNorm.weight"]
        groups = [
            {"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)],
             "weight_decay": 0.01},
            {"params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)],
             "weight_decay": 0.0},
        ]
        return torch.optim.Adam(groups, lr=args.lr)
    """
    (finding,) = audit(source, {"EG301"})
    assert finding.location.line == 10
    assert "in param group 0" in finding.message and finding.evidence["param_groups"] is True


# -- EG903 ---------------------------------------------------------------------------------

def test_eg903():
    source = """\
    import torch
    from torch import load
    UNSAFE = False
    a = torch.load("a.pt", weights_only=False)
    b = load("b.pt", map_location="cpu", weights_only=UNSAFE)
    c = torch.load("c.pt")
    d = torch.load("d.pt", weights_only=True)
    e = torch.serialization.load("e.pt", weights_only=False)
    """
    findings = audit(source, {"EG903"})
    assert [(f.location.line, f.location.column) for f in findings] == [(4, 5), (5, 5), (8, 5)]
    assert "weights_only=False" in findings[0].message


# -- EG201 (nn.Sequential literals) ---------------------------------------------------------

def test_eg201_sequential_literals():
    source = """\
    from collections import OrderedDict
    import torch.nn as nn
    a = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.BatchNorm1d(8))
    b = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.Dropout2d(0.2),
        nn.ReLU(),
        nn.BatchNorm2d(8),
    )
    c = nn.Sequential(OrderedDict([("drop", nn.Dropout(0.1)), ("bn", nn.BatchNorm1d(4))]))
    d = nn.Sequential(nn.Linear(4, 4), nn.Dropout(), nn.Sequential(nn.BatchNorm1d(4), nn.ReLU()))
    ok1 = nn.Sequential(nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5))
    e = nn.Sequential(nn.Dropout(0.5), nn.Linear(8, 8), nn.BatchNorm1d(8))  # the shift passes a weight layer
    ok3 = nn.Sequential(nn.Dropout(p=0.0), nn.BatchNorm1d(8))
    ok4 = nn.Sequential(*layers)
    ok5 = nn.Sequential(nn.Dropout(0.5), nn.LayerNorm(8), nn.BatchNorm1d(8))  # LayerNorm re-normalises
    """
    findings = audit(source, {"EG201"})
    lines = textwrap.dedent(source).splitlines()
    expected = [(n, lines[n - 1].index("nn.Dropout") + 1) for n in (3, 6, 10, 11, 13)]   # 1-based columns
    assert [(f.location.line, f.location.column) for f in findings] == expected
    assert findings[1].evidence["batchnorm_line"] == 8


# -- EG105 ---------------------------------------------------------------------------------

def test_eg105_functional_dropout_spellings():
    source = """\
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.nn.functional import dropout2d

    class Block(nn.Module):
        def forward(self, x):
            x = F.dropout(x, 0.1)
            x = torch.nn.functional.dropout(x, p=0.1, training=True)
            x = dropout2d(x, 0.1)
            x = torch.dropout(x, 0.1, True)
            x = F.alpha_dropout(x, 0.1)
            x = F.dropout(x, 0.1, self.training)
            x = F.dropout(x, p=0.1, training=self.training and self.enabled)
            x = torch.dropout(x, 0.1, train=self.training)
            x = F.dropout(x, p=0.0)
            x = F.dropout(x, 0.1, False)
            return x
    """
    findings = audit(source, {"EG105"})
    assert [(f.location.line, f.location.column) for f in findings] == [(8, 13), (9, 13), (10, 13), (11, 13), (12, 13)]
    effects = [f.evidence["effect"] for f in findings]
    assert effects == ["always-on", "always-on", "always-on", "always-on", "never-on"]


def test_eg105_sdpa_gating():
    source = """\
    import torch.nn.functional as F
    import torch.nn as nn

    class Attention(nn.Module):
        def forward(self, q, k, v, mask=None):
            a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p)
            b = F.scaled_dot_product_attention(q, k, v, mask, 0.1)
            c = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0)
            p = 0.0 if not self.training else self.p
            d = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
            e = F.scaled_dot_product_attention(q, k, v)
            f = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0)
            return a, b, c, d, e, f
    """
    assert found(source, {"EG105"}) == [(6, "EG105"), (7, "EG105")]


def test_eg105_scope_is_module_like_classes():
    source = """\
    import torch
    import torch.nn.functional as F

    def helper(x):                       # a free function: not judged
        return F.dropout(x, 0.5)

    class Config:                        # not a module
        def apply(self, x):
            return F.dropout(x, 0.5)

    class Base(torch.nn.Module):
        pass

    class Child(Base):                   # module through a base defined in the file
        def extra(self, x):
            return F.dropout(x, 0.5)

    class Lit(LightningModule):
        def step(self, x):
            def inner(y):                # closures inside methods are judged too
                return F.dropout(y, 0.5)
            return inner(x)

        @staticmethod
        def fn(ctx, x):
            return F.dropout(x, 0.5)

        def forward(self, x, training: bool = False):
            return F.dropout(x, 0.5, training)   # passed down by the caller
    """
    assert found(source, {"EG105"}) == [(16, "EG105"), (21, "EG105")]


# -- the check itself ----------------------------------------------------------------------

def test_syntax_error_is_a_target_error():
    subject = AuditSubject(path="broken.py", kind="python-source", source_text="import torch\nx = 1\ndef f(:\n")
    outcome = run(subject, AuditOptions(selected=ALL))
    assert outcome.findings == ()
    [error] = outcome.target_errors
    assert error.startswith("broken.py:3: invalid Python syntax: ")
    assert {c.status for c in outcome.coverage.values()} == {"skipped"}


def test_only_selected_rules_are_reported():
    source = "import torch\nopt = torch.optim.Adam([], weight_decay=0.1)\nw = torch.load('x', weights_only=False)\n"
    assert found(source, {"EG903"}) == [(3, "EG903")]
    assert found(source, set()) == []
    assert found(source) == [(2, "EG301"), (3, "EG903")]


def test_source_is_read_from_disk_when_not_given(tmp_path):
    target = tmp_path / "train.py"
    target.write_text("import torch\nopt = torch.optim.Adam([], weight_decay=0.1)\n")
    findings = list(run(AuditSubject(path=str(target), kind="python-source"), AuditOptions(selected=ALL)).findings)
    assert [(f.rule, f.location.path, f.location.line) for f in findings] == [("EG301", str(target), 2)]


def test_never_imports_torch_or_executes_the_file(tmp_path):
    marker = tmp_path / "executed"
    target = tmp_path / "serve.py"
    target.write_text(textwrap.dedent(f"""\
        import torch
        open({str(marker)!r}, "w").write("ran")
        model = torch.load("m.pt", weights_only=False)
        """))
    script = textwrap.dedent(f"""\
        import sys
        from evalguard.checks.source.check import run
        from evalguard.subject import AuditSubject, AuditOptions
        subject = AuditSubject(path={str(target)!r}, kind="python-source")
        rules = frozenset({sorted(ALL)!r})
        found = [f.rule for f in run(subject, AuditOptions(selected=rules)).findings]
        assert found == ["EG903"], found
        assert "torch" not in sys.modules, "auditing a .py file imported torch"
        print("ok")
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert not marker.exists()


def test_parallel_source_run_imports_torch_in_no_process(tmp_path):
    """`evalguard check` over a tree with worker processes: a stand-in torch first on the path
    records every process that imports it, so a worker importing torch cannot go unseen."""
    imported = tmp_path / "torch-imported"
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    fake.joinpath("__init__.py").write_text(f"import os\nopen({str(imported)!r}, 'a').write(f'{{os.getpid()}}\\n')\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(8):
        tree.joinpath(f"serve_{i}.py").write_text("import torch\nmodel = torch.load('m.pt', weights_only=False)\n")
    script = textwrap.dedent(f"""\
        import os, sys
        from evalguard.execution import sources
        chunk = sources._audit_chunk

        def recording(targets):   # forked workers inherit this module: they run it and log their pid
            open({str(tmp_path / "workers")!r}, "a").write(f"{{os.getpid()}}\\n")
            return chunk(targets)

        sources._audit_chunk = recording
        from evalguard.cli import main
        try:
            main(["check", {str(tree)!r}, "--select", "EG903", "--jobs", "2", "--format", "json"])
        except SystemExit as exc:
            assert exc.code == 1, exc.code
        assert "torch" not in sys.modules
        print("parent", os.getpid(), file=sys.stderr)
        """)
    env = {**__import__("os").environ, "PYTHONPATH": f"{fake.parent}{__import__('os').pathsep}{REPO}"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"rule": "EG903"') == 8
    workers = set((tmp_path / "workers").read_text().split())
    parent = result.stderr.split("parent ")[-1].strip()
    assert len(workers) == 2 and parent not in workers, "the files were checked in two worker processes"
    assert not imported.exists(), f"torch imported by process(es) {imported.read_text().split()}"


MARKER = __import__("re").compile(r"#\s*\[(EG\d{3}(?:\s*,\s*EG\d{3})*)\]\s*$")


@pytest.mark.parametrize("path", sorted(p for rule in ("EG105", "EG106", "EG301", "EG903")
                                        for p in (REPO / "examples" / "rules" / rule).glob("*.py")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_source_examples_raise_exactly_their_markers(path):
    text = path.read_text()
    expected = {(number, rule.strip()) for number, line in enumerate(text.splitlines(), start=1)
                for match in [MARKER.search(line)] if match for rule in match.group(1).split(",")}
    findings = run(AuditSubject(path=str(path), kind="python-source", source_text=text), AuditOptions(selected=ALL)).findings
    assert {(f.location.line, f.rule) for f in findings} == expected
    assert bool(expected) == (path.name == "bad.py")


def test_names_defined_in_the_file_shadow_conventional_and_star_names():
    source = """\
    from torch.nn.functional import *
    import torch.nn as nn

    def dropout(x, p):                   # the file's own dropout, not torch's
        return x

    class F:                             # nor is this F torch.nn.functional
        @staticmethod
        def dropout(x, p):
            return x

    class Block(nn.Module):
        def forward(self, x):
            return dropout(x, 0.5) + F.dropout(x, 0.5) + dropout2d(x, 0.5)
    """
    findings = audit(source, {"EG105"})
    assert [(f.location.line, f.evidence["function"]) for f in findings] == [
        (14, "torch.nn.functional.dropout2d")]
