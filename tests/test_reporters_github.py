"""GitHub Actions workflow-command annotations."""
from __future__ import annotations

from test_reporters_samples import blocked_report, error_target_report

from evalguard.findings import Finding, Location, Report, Severity, TargetResult
from evalguard.reporters.github import annotations, in_github_actions


def test_one_annotation_per_finding_with_level_file_and_line():
    report = blocked_report()
    lines = annotations(report).splitlines()
    assert len(lines) == len(report.findings)
    assert "::error file=src/train.py,line=42,col=16,title=EG105 functional-dropout-ignores-mode::F.dropout(" in \
        "\n".join(lines)
    eg201 = next(line for line in lines if "EG201" in line)
    assert eg201.startswith("::warning file=models/cifar_cnn.pt,title=EG201 dropout-before-batchnorm::features.3: ")
    assert ",line=" not in eg201
    assert next(line for line in lines if "EG107" in line).startswith("::notice ")


def test_values_are_escaped():
    finding = Finding("EG105", "50% off\nsecond line", Location("dir,a:b.py", 3), {}, Severity.ERROR, "n")
    (line,) = annotations(Report((), (finding,), {})).splitlines()
    assert line == "::error file=dir%2Ca%3Ab.py,line=3,title=EG105 n::50%25 off%0Asecond line"


def test_unreadable_targets_are_annotated():
    text = annotations(error_target_report())
    assert text == "::error file=models/broken.pt,title=evalguard::could not be audited: " \
                   "not a zip archive or pickle (file is empty)\n"
    assert annotations(Report((TargetResult("a.pt", "state-dict", "audited"),), (), {})) == ""


def test_detects_github_actions_from_the_environment():
    assert in_github_actions({"GITHUB_ACTIONS": "true"})
    assert not in_github_actions({"GITHUB_ACTIONS": "false"})
    assert not in_github_actions({})
