"""The engine: selection, policy (names, severities), suppression, EG900, ordering."""
from pathlib import Path

import pytest

from evalguard import engine, orchestrator
from evalguard.catalogue import load_catalogue
from evalguard.checks import CheckSpec
from evalguard.findings import Finding, Location, Severity
from evalguard.outcome import CheckOutcome, RuleRun
from evalguard.subject import AuditOptions, AuditSubject

ALL = frozenset(load_catalogue())


def raw(rule, path="m.pt", line=None, module=None, message="m"):
    return Finding(rule=rule, message=message, location=Location(path=path, line=line, module=module))


def test_policy_fills_name_and_catalogue_severity():
    [finding] = engine.apply_policy([raw("EG201")], AuditOptions(selected=ALL))
    assert finding.name == "dropout-before-batchnorm"
    assert finding.severity == load_catalogue()["EG201"].severity


def test_policy_drops_unselected_rules():
    kept = engine.apply_policy([raw("EG201"), raw("EG101")], AuditOptions(selected=frozenset({"EG101"})))
    assert [f.rule for f in kept] == ["EG101"]


def test_config_override_beats_check_severity_and_check_severity_beats_catalogue():
    preset = Finding("EG102", "allowed", Location("m.pt"), severity=Severity.INFO)
    [kept] = engine.apply_policy([preset], AuditOptions(selected=ALL))
    assert kept.severity is Severity.INFO
    [overridden] = engine.apply_policy([preset], AuditOptions(selected=ALL), {"EG102": Severity.WARNING})
    assert overridden.severity is Severity.WARNING


def test_findings_sorted_by_path_line_module_rule():
    findings = [raw("EG301", "b.py", 3), raw("EG903", "a.py", 10), raw("EG105", "a.py", 2),
                raw("EG201", "a.py", 2), raw("EG101", "a.pt", None, "z"), raw("EG102", "a.pt", None, "a")]
    kept = engine.apply_policy(findings, AuditOptions(selected=ALL))
    assert [(f.location.path, f.location.line, f.rule) for f in kept] == [
        ("a.pt", None, "EG102"), ("a.pt", None, "EG101"), ("a.py", 2, "EG105"), ("a.py", 2, "EG201"),
        ("a.py", 10, "EG903"), ("b.py", 3, "EG301")]


def test_duplicate_findings_are_reported_once():
    kept = engine.apply_policy([raw("EG201"), raw("EG201")], AuditOptions(selected=ALL))
    assert len(kept) == 1


def test_suppression_comment_on_the_line(tmp_path: Path):
    source = tmp_path / "train.py"
    source.write_text("a = 1\nopt = Adam(p, weight_decay=1e-2)  # evalguard: ignore[EG301]\n"
                      "opt2 = Adam(p, weight_decay=1e-2)  # evalguard: ignore[EG903]\n"
                      "x = torch.load(f, weights_only=False)  # evalguard: ignore\n")
    findings = [raw("EG301", str(source), 2), raw("EG301", str(source), 3), raw("EG903", str(source), 4)]
    kept = engine.apply_policy(findings, AuditOptions(selected=ALL))
    assert [(f.rule, f.location.line) for f in kept] == [("EG301", 3)]


def _boom(subject, options):
    raise RuntimeError("kaboom\nsecond line")


def _fine(subject, options):
    return CheckOutcome(findings=(Finding("EG207", "nan in w", Location(subject.path, module="w")),),
                        coverage={"EG207": RuleRun("ran")})


def _half(subject, options):
    """Owns EG101 and EG102: runs EG101, skips EG102, says nothing about EG103."""
    return CheckOutcome(coverage={"EG101": RuleRun("ran"), "EG102": RuleRun("skipped", "no inputs")})


def _foreign(subject, options):
    return CheckOutcome(findings=(Finding("EG301", "not mine", Location(subject.path)),),
                        coverage={"EG101": RuleRun("ran")})


def test_crashing_check_becomes_eg900_and_others_still_run(monkeypatch):
    kinds = frozenset({"factory"})
    monkeypatch.setattr(engine, "CHECKS", (
        CheckSpec("boom", ("EG101",), kinds, f"{__name__}:_boom"),
        CheckSpec("fine", ("EG207",), kinds, f"{__name__}:_fine"),
    ))
    subject = AuditSubject(path="m.pt", kind="factory")
    result, findings = engine.audit_subject(subject, AuditOptions(selected=ALL))
    assert result.status == "audited"
    by_rule = {f.rule: f for f in findings}
    assert set(by_rule) == {"EG900", "EG207"}
    assert "boom" in by_rule["EG900"].message and "kaboom" in by_rule["EG900"].message
    assert "second line" not in by_rule["EG900"].message
    assert by_rule["EG900"].evidence["rules_not_checked"] == ["EG101"]
    assert result.coverage["EG101"].status == "skipped" and "crashed" in result.coverage["EG101"].reason
    assert result.coverage["EG207"].status == "failed"


def test_coverage_is_merged_per_rule(monkeypatch):
    kinds = frozenset({"factory"})
    monkeypatch.setattr(engine, "CHECKS", (
        CheckSpec("half", ("EG101", "EG102", "EG103"), kinds, f"{__name__}:_half"),
        CheckSpec("off", ("EG401",), kinds, f"{__name__}:_boom", enabled_by="onnx_enabled",
                  disabled_reason="ONNX checks turned off (--no-onnx)"),
    ))
    selected = frozenset({"EG101", "EG102", "EG103", "EG401", "EG903"})
    result, findings = engine.audit_subject(AuditSubject(path="m.pt", kind="factory"),
                                            AuditOptions(selected=selected, onnx_enabled=False))
    assert findings == []
    status = {rule: (c.status, c.reason) for rule, c in result.coverage.items()}
    assert status["EG101"] == ("passed", None)
    assert status["EG102"] == ("skipped", "no inputs")
    assert status["EG103"][0] == "skipped" and "did not report" in status["EG103"][1]
    assert status["EG401"] == ("skipped", "ONNX checks turned off (--no-onnx)")
    assert status["EG903"][0] == "not-applicable"
    assert set(result.not_run()) == {"EG102", "EG103", "EG401"}


def test_a_rule_emitted_by_a_check_that_does_not_own_it_is_eg900(monkeypatch):
    monkeypatch.setattr(engine, "CHECKS", (CheckSpec("foreign", ("EG101",), frozenset({"factory"}),
                                                     f"{__name__}:_foreign"),))
    result, findings = engine.audit_subject(AuditSubject(path="m.pt", kind="factory"), AuditOptions(selected=ALL))
    assert [f.rule for f in findings] == ["EG900"]
    assert "does not own" in findings[0].message and "EG301" in findings[0].message


def test_a_kind_no_check_handles_is_not_audited(monkeypatch):
    monkeypatch.setattr(engine, "CHECKS", ())
    result, findings = engine.audit_subject(AuditSubject(path="m.xyz", kind="mystery"), AuditOptions(selected=ALL))
    assert result.status == "error" and "no check handles" in result.detail
    assert findings == []


def test_checks_skipped_when_none_of_their_rules_selected(monkeypatch):
    monkeypatch.setattr(engine, "CHECKS", (CheckSpec("boom", ("EG101",), frozenset({"factory"}),
                                                     f"{__name__}:_boom"),))
    subject = AuditSubject(path="m.pt", kind="factory")
    _, findings = engine.audit_subject(subject, AuditOptions(selected=frozenset({"EG207"})))
    assert findings == []


def test_checks_only_run_on_their_kinds(monkeypatch):
    monkeypatch.setattr(engine, "CHECKS", (CheckSpec("boom", ("EG101",), frozenset({"onnx"}),
                                                     f"{__name__}:_boom"),))
    _, findings = engine.audit_subject(AuditSubject(path="m.py", kind="python-source"),
                                       AuditOptions(selected=ALL))
    assert findings == []


def test_missing_target_is_an_error_result_not_an_exception(tmp_path):
    report = orchestrator.audit([str(tmp_path / "nope.pt")], AuditOptions(selected=ALL))
    [target] = report.targets
    assert target.status == "error" and "no such file" in target.detail


@pytest.mark.parametrize("selectors,expected", [
    (["EG20"], {"EG201", "EG202", "EG203", "EG204", "EG205", "EG206", "EG207", "EG208"}),
    (["eg101", "EG903"], {"EG101", "EG903"}),
])
def test_rule_selectors_expand_prefixes(selectors, expected):
    from evalguard.catalogue import resolve_rule_selectors

    assert resolve_rule_selectors(selectors, load_catalogue()) == expected


def test_unknown_selector_is_rejected():
    from evalguard.catalogue import resolve_rule_selectors

    with pytest.raises(ValueError, match="EG999"):
        resolve_rule_selectors(["EG999"], load_catalogue())


def _cannot_run(subject, options):
    from evalguard.errors import TargetError

    raise TargetError("forward failed on the example inputs: shape mismatch")


def test_target_error_in_one_check_keeps_the_other_checks_findings(monkeypatch):
    kinds = frozenset({"factory"})
    monkeypatch.setattr(engine, "CHECKS", (
        CheckSpec("dynamic", ("EG101",), kinds, f"{__name__}:_cannot_run"),
        CheckSpec("fine", ("EG207",), kinds, f"{__name__}:_fine"),
    ))
    result, findings = engine.audit_subject(AuditSubject(path="m.pt", kind="factory"), AuditOptions(selected=ALL))
    assert result.status == "error" and "forward failed" in result.detail
    assert [f.rule for f in findings] == ["EG207"]
    assert result.coverage["EG101"].status == "skipped" and "forward failed" in result.coverage["EG101"].reason
