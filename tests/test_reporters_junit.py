"""JUnit XML parsed back with xml.etree: suites per target, cases per rule, failures per finding."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

from test_reporters_samples import MODEL, SOURCE, blocked_report, error_target_report, metadata, refused_report

from evalguard.findings import Finding, Location, Report, Severity, TargetResult
from evalguard.reporters import render


def _parse(report) -> ET.Element:
    return ET.fromstring(render(report, "junit").encode("utf-8"))


def _cases(suite):
    return {case.get("name").split()[0]: case for case in suite.iter("testcase")}


def test_one_suite_per_target_and_totals_add_up():
    root = _parse(blocked_report())
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [MODEL, SOURCE]
    for key in ("tests", "failures", "errors", "skipped"):
        assert int(root.get(key)) == sum(int(s.get(key)) for s in suites)
    for suite in suites:
        assert int(suite.get("tests")) == len(suite.findall("testcase"))
        assert int(suite.get("failures")) == len(suite.findall("testcase/failure"))


def test_cases_are_the_selected_rules_that_apply_to_the_kind():
    model, source = _parse(blocked_report()).findall("testsuite")
    model_cases, source_cases = set(_cases(model)), set(_cases(source))
    assert {"EG101", "EG201", "EG401", "EG901"} <= model_cases
    assert not {"EG105", "EG106", "EG903"} & model_cases          # source-only rules
    assert {"EG105", "EG301", "EG903", "EG900"} <= source_cases
    assert not {"EG101", "EG401", "EG901"} & source_cases          # model-only rules
    assert model_cases <= set(metadata()["selected"])


def test_failures_are_findings_at_or_above_fail_on_and_the_rest_is_system_out():
    model, source = _parse(blocked_report()).findall("testsuite")
    cases = _cases(model)
    assert {n for n, c in cases.items() if c.find("failure") is not None} == {"EG101", "EG102", "EG401"}
    failure = cases["EG401"].find("failure")
    assert failure.get("type") == "EG401" and "logits" in failure.get("message")
    assert "atol_that_would_pass: 0.42" in failure.text
    assert cases["EG201"].find("failure") is None
    assert "dropout-before-batchnorm" in cases["EG201"].find("system-out").text
    assert cases["EG103"].find("failure") is None and cases["EG103"].find("system-out") is None
    assert _cases(source)["EG105"].find("failure") is not None


def test_fail_on_warning_turns_warnings_into_failures():
    report = replace(blocked_report(), metadata=metadata(fail_on="warning"))
    model, source = _parse(report).findall("testsuite")
    assert _cases(model)["EG201"].find("failure") is not None
    assert _cases(source)["EG301"].find("failure") is not None
    assert _cases(model)["EG107"].find("failure") is None        # info stays below


def test_unreadable_target_is_an_error_case():
    suites = _parse(error_target_report()).findall("testsuite")
    broken = next(s for s in suites if s.get("name") == "models/broken.pt")
    (case,) = broken.findall("testcase")
    error = case.find("error")
    assert error is not None and "file is empty" in error.get("message")
    assert broken.get("errors") == "1"


def test_refused_pickle_fails_the_scan_rule_and_skips_the_rest():
    (suite,) = _parse(refused_report()).findall("testsuite")
    cases = _cases(suite)
    assert cases["EG901"].find("failure") is not None
    assert cases["EG902"].find("skipped") is None                 # the scan did run
    assert cases["EG101"].find("skipped") is not None
    assert suite.get("skipped") == "3"


def test_control_characters_and_markup_in_messages_stay_parseable():
    finding = Finding("EG900", "check crashed: <ValueError> \x1b[31mbad\x00 & worse", Location("m.pt"),
                      {"trace": "line1\nline2 </failure>"}, Severity.ERROR, "internal-check-error")
    report = Report((TargetResult("m.pt", "state-dict", "audited"),), (finding,), {"selected": ["EG900"]})
    (case,) = _parse(report).iter("testcase")
    failure = case.find("failure")
    assert failure.get("message").startswith("check crashed: <ValueError>")
    assert "</failure>" in failure.text
