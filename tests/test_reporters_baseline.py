"""Fingerprints and --baseline: known findings hidden, new ones reported, no churn on retraining."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from test_reporters_samples import SOURCE, blocked_report

from evalguard.findings import Finding, Location, Severity
from evalguard.reporters.baseline import (
    filter_new,
    fingerprint,
    fingerprint_v1,
    normalise_message,
    read_baseline,
    write_baseline,
)


def _f(message="Dropout features.3 (p=0.3) feeds BatchNorm2d features.5", path="m.pt", line=None,
       module="features.3", rule="EG201"):
    return Finding(rule, message, Location(path, line, None, module), {}, Severity.WARNING, "x")


def _retrained(report):
    """Same problems after retraining and an edit above them: numbers and lines moved."""
    moved = []
    for f in report.findings:
        loc = f.location
        moved.append(replace(f, message=f.message.replace("0.4137", "0.3088").replace("75%", "64%"),
                             location=replace(loc, line=None if loc.line is None else loc.line + 12),
                             evidence={k: v / 2 if isinstance(v, float) else v for k, v in f.evidence.items()}))
    return replace(report, findings=tuple(moved))


def test_numbers_are_blanked_but_identifiers_with_digits_are_kept():
    assert normalise_message("diff 0.41 > atol 1e-05 on 85% of 2x8; p=0.5") == "diff # > atol # on #% of 2x8; p=#"
    assert normalise_message("Dropout2d layer.0.dropout fc1") == "Dropout2d layer.0.dropout fc1"


def test_fingerprint_ignores_line_column_numbers_and_message_wording():
    base = _f(path=SOURCE, line=10, module=None)
    assert fingerprint(base) == fingerprint(replace(base, location=Location(SOURCE, 99, 4)))
    assert fingerprint(base) == fingerprint(replace(base, evidence={"p": 0.9}))
    assert fingerprint(_f("max abs diff 0.41")) == fingerprint(_f("max abs diff 0.0002"))
    assert fingerprint(_f("Dropout feeds BatchNorm")) == fingerprint(_f("a reworded message"))
    assert fingerprint(_f(path="./m.pt")) == fingerprint(_f(path="m.pt"))
    noted = replace(base, evidence={"note": "prose"})
    assert fingerprint(noted) == fingerprint(base)


def test_fingerprint_separates_rule_path_module_and_named_things():
    base = fingerprint(_f())
    assert base != fingerprint(_f(rule="EG206"))
    assert base != fingerprint(_f(path="other.pt"))
    assert base != fingerprint(_f(module="features.7"))
    named = _f(path=SOURCE, line=3, module=None)
    assert fingerprint(replace(named, evidence={"model": "net"})) != fingerprint(replace(named, evidence={"model": "ema"}))


def test_version_1_baselines_still_match(tmp_path):
    report = blocked_report()
    old = {"evalguard_baseline": 1, "fingerprints": {
        fingerprint_v1(f): {"count": 1, "rule": f.rule} for f in report.findings}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    assert filter_new(report, path).findings == ()


def test_baseline_hides_known_findings_after_retraining(tmp_path):
    report = blocked_report()
    baseline = tmp_path / "evalguard-baseline.json"
    assert write_baseline(report, baseline) == len(report.findings)
    filtered = filter_new(_retrained(report), baseline)
    assert filtered.findings == ()
    assert filtered.metadata["baseline"] == {"path": str(baseline), "suppressed": len(report.findings), "fixed": 0}
    assert filtered.targets == report.targets


def test_new_finding_is_reported_and_fixed_ones_are_counted(tmp_path):
    report = blocked_report()
    baseline = tmp_path / "b.json"
    write_baseline(report, baseline)
    new = _f("Dropout head.0 (p=0.5) feeds BatchNorm1d head.2", module="head.0")
    changed = replace(report, findings=report.findings[1:] + (new,))
    filtered = filter_new(changed, baseline)
    assert filtered.findings == (new,)
    assert filtered.metadata["baseline"]["fixed"] == 1


def test_duplicates_are_counted_not_collapsed(tmp_path):
    one = _f("F.dropout without training=self.training", path=SOURCE, line=10, module=None, rule="EG105")
    report = replace(blocked_report(), findings=(one,))
    baseline = tmp_path / "b.json"
    write_baseline(report, baseline)
    two = replace(one, location=Location(SOURCE, 30))
    filtered = filter_new(replace(report, findings=(one, two)), baseline)
    assert len(filtered.findings) == 1


def test_baseline_file_is_readable_and_sorted(tmp_path):
    baseline = tmp_path / "b.json"
    write_baseline(blocked_report(), baseline)
    data = json.loads(baseline.read_text())
    assert data["evalguard_baseline"] == 2
    entries = list(data["fingerprints"].values())
    assert {"count", "rule", "path", "module", "message"} <= set(entries[0])
    assert [e["path"] for e in entries] == sorted(e["path"] for e in entries)
    assert read_baseline(baseline).counts == {k: v["count"] for k, v in data["fingerprints"].items()}


@pytest.mark.parametrize("content", ["not json", "[]", '{"fingerprints": {}}'])
def test_bad_baseline_files_give_a_one_line_reason(tmp_path, content):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="baseline"):
        read_baseline(path)
    with pytest.raises(ValueError):
        read_baseline(tmp_path / "missing.json")


def test_version_1_baseline_hides_its_findings_through_the_cli(run_cli, tmp_path):
    """The product path: `check --baseline` with a version-1 file (fingerprints over the message)."""
    from evalguard.reporters.json_report import report_from_dict

    source = tmp_path / "serve.py"
    source.write_text("import torch\nmodel = torch.load('m.pt', weights_only=False)\n")
    code, out, _ = run_cli("check", source, "--select", "EG903", "--format", "json")
    report = report_from_dict(json.loads(out))
    assert code == 1 and [f.rule for f in report.findings] == ["EG903"]
    old = tmp_path / "v1.json"
    old.write_text(json.dumps({"evalguard_baseline": 1, "fingerprints": {
        fingerprint_v1(f): {"count": 1, "rule": f.rule} for f in report.findings}}))
    code, out, err = run_cli("check", source, "--select", "EG903", "--baseline", old, "--format", "json")
    assert json.loads(out)["findings"] == [] and "1 finding hidden by the baseline" in err
    assert code == 0
    source.write_text(source.read_text() + "other = torch.load('n.pt', weights_only=False)\n")
    code, out, _ = run_cli("check", source, "--select", "EG903", "--baseline", old, "--format", "json")
    assert code == 1 and [f["location"]["line"] for f in json.loads(out)["findings"]] == [3]
