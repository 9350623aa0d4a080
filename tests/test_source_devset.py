"""The source rules on the development set: real bugs from public repositories (tests/devset/source).

Every entry is a small project reproducing one fixed bug in evalguard's own words (the repository
and PR/issue are in each file's header and in manifest.toml), next to its fixed twin. Each project is
copied to a temporary folder (so no requirement file of this repository is in reach) and checked as
a folder, through the engine, as ``evalguard check DIR`` does.
"""
import shutil
from collections import Counter
from pathlib import Path

import pytest
import tomllib

from evalguard.orchestrator import audit
from evalguard.subject import AuditOptions

DEVSET = Path(__file__).resolve().parent / "devset" / "source"
BUGS = tomllib.loads((DEVSET / "manifest.toml").read_text())["bug"]
SOURCE_RULES = frozenset({"EG105", "EG106", "EG201", "EG301", "EG903"})
#: Lowest recall accepted per rule on this set, and over all rules together. This is the *tuning*
#: set (issue 27: 26 EG106 bugs, all caught when written; round 2 added 5 tuning bugs, all caught, and
#: 3 bugs written before tuning and measured once at the end, 2 caught where the manifest expects
#: them); the held-out recall is measured elsewhere.
MIN_RECALL = {"EG106": 32 / 34, "EG105": 1.0, "EG201": 1.0, "EG301": 1.0, "EG903": 1.0}
MIN_TOTAL_RECALL = 40 / 42


def findings_in(tmp_path: Path, entry: str, variant: str) -> dict[str, set[str]]:
    """Relative path -> rules reported, for one variant of one entry checked as a folder."""
    project = tmp_path / entry / variant
    shutil.copytree(DEVSET / entry / variant, project)
    report = audit([str(project)], AuditOptions(selected=SOURCE_RULES))
    assert all(t.status == "audited" for t in report.targets), [t.detail for t in report.targets]
    found: dict[str, set[str]] = {}
    for finding in report.findings:
        found.setdefault(Path(finding.location.path).relative_to(project).as_posix(), set()).add(finding.rule)
    return found


def test_manifest_is_complete():
    assert len(BUGS) >= 20
    assert len({bug["source"].split("/")[3] + "/" + bug["source"].split("/")[4] for bug in BUGS}) >= 10
    for bug in BUGS:
        for variant in ("bad", "fixed"):
            assert (DEVSET / bug["id"] / variant / bug["target"]).is_file(), (bug["id"], variant)
        assert set(bug["rules"]) <= SOURCE_RULES
        assert bug["source"] in (DEVSET / bug["id"] / "bad" / bug["target"]).read_text() or \
            "/".join(bug["source"].split("/")[3:5]) in (DEVSET / bug["id"] / "bad" / bug["target"]).read_text()


@pytest.mark.parametrize("bug", BUGS, ids=[b["id"] for b in BUGS])
def test_fixed_twin_raises_nothing(bug, tmp_path):
    assert findings_in(tmp_path, bug["id"], "fixed") == {}


@pytest.mark.parametrize("bug", BUGS, ids=[b["id"] for b in BUGS])
def test_bad_version_raises_only_its_rules(bug, tmp_path):
    found = findings_in(tmp_path, bug["id"], "bad")
    unexpected = {path: rules - set(bug["rules"]) for path, rules in found.items() if rules - set(bug["rules"])}
    assert unexpected == {}


def test_recall_per_rule(tmp_path):
    expected, caught, missed = Counter(), Counter(), []
    for bug in BUGS:
        found = findings_in(tmp_path, bug["id"], "bad").get(bug["target"], set())
        for rule in bug["rules"]:
            expected[rule] += 1
            if rule in found:
                caught[rule] += 1
            else:
                missed.append(f"{bug['id']} ({rule})")
    recall = {rule: caught[rule] / expected[rule] for rule in expected}
    assert set(recall) == SOURCE_RULES
    assert {rule: r for rule, r in recall.items() if r < MIN_RECALL[rule]} == {}, (recall, missed)
    assert sum(caught.values()) / sum(expected.values()) >= MIN_TOTAL_RECALL, missed
