"""The rule catalogue: complete, well-formed, one-to-one with the checks, shipped in the wheel."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from evalguard.catalogue import REQUIRED_KEYS, load_catalogue, parse_rule
from evalguard.checks import implemented_rules

REPO = Path(__file__).resolve().parent.parent
DESIGN_IDS = {f"EG{n}" for n in (101, 102, 103, 104, 105, 106, 107, 201, 202, 203, 204, 205, 206, 207, 208,
                                 301, 302, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 900, 901, 902, 903, 904, 905)}


def test_catalogue_holds_exactly_the_design_ids():
    assert set(load_catalogue()) == DESIGN_IDS


def test_names_are_unique_kebab_case():
    names = [r.name for r in load_catalogue().values()]
    assert len(set(names)) == len(names)
    assert all(n == n.lower() and " " not in n and "_" not in n for n in names)


@pytest.mark.parametrize("rule_id", sorted(DESIGN_IDS))
def test_each_rule_is_documented(rule_id):
    rule = load_catalogue()[rule_id]
    assert "TODO" not in rule.why and "TODO" not in rule.fix, f"{rule_id} still has placeholder text"
    assert len(rule.why) > 80 and len(rule.fix) > 20


def test_implemented_status_matches_the_check_table():
    implemented = {r.id for r in load_catalogue().values() if r.status == "implemented"}
    assert implemented == set(implemented_rules())


def test_parse_rule_rejects_missing_and_unknown_keys():
    with pytest.raises(ValueError, match="missing keys"):
        parse_rule('id = "EG101"\n', "EG101.toml")
    full = "\n".join(f'{k} = "x"' for k in REQUIRED_KEYS).replace('id = "x"', 'id = "EG101"')
    full = full.replace('severity = "x"', 'severity = "error"').replace('status = "x"', 'status = "planned"')
    parse_rule(full, "EG101.toml")
    with pytest.raises(ValueError, match="unknown keys"):
        parse_rule(full + '\nsevrity = "x"\n', "EG101.toml")
    with pytest.raises(ValueError, match="does not match"):
        parse_rule(full, "EG102.toml")


def test_catalogue_is_read_from_the_built_wheel(tmp_path):
    """Build the wheel and read the rules from inside it, with the source tree out of reach."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [wheel] = tmp_path.glob("evalguard-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"evalguard/rules/{rule_id}.toml" for rule_id in DESIGN_IDS} <= set(names)
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "import evalguard.catalogue as c; assert c.__file__.startswith(sys.argv[1]), c.__file__;"
            "print(len(c.load_catalogue()))")
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(wheel)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(len(DESIGN_IDS))


def test_every_rule_has_an_owner_and_at_most_one_per_target_kind():
    """One place per rule: for any target kind, exactly one family (or the engine) emits it.
    EG201 and EG301 have two detection paths (a model's dataflow/optimizer state and a .py
    file's syntax tree), owned by different families for disjoint kinds."""
    from evalguard.checks import CHECKS, ENGINE_RULES, owners

    table = owners()
    assert set(table) == set(load_catalogue())
    for rule, names in table.items():
        if rule in ENGINE_RULES:
            assert names == ["engine"]
            continue
        specs = [spec for spec in CHECKS if rule in spec.rules]
        for i, first in enumerate(specs):
            for second in specs[i + 1:]:
                assert not (first.kinds & second.kinds), (rule, first.name, second.name)


def test_family_declarations_do_not_import_torch():
    import subprocess
    import sys

    script = ("import sys, evalguard.checks as c; assert len(c.CHECKS) >= 5; "
              "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
