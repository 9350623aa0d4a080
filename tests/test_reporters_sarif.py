"""SARIF 2.1.0 structure, checked by hand (no schema download: the tests run offline)."""
from __future__ import annotations

import json
from dataclasses import replace

from test_reporters_samples import MODEL, SOURCE, blocked_report, error_target_report, metadata

from evalguard.findings import Finding, Location, Report, Severity, TargetResult
from evalguard.reporters import json_report, render
from evalguard.reporters.baseline import FINGERPRINT_KEY
from evalguard.reporters.sarif import artifact_uri, report_to_sarif

LEVELS = {"error", "warning", "note"}


def _run(report=None):
    sarif = json.loads(render(report or blocked_report(), "sarif"))
    assert sarif["version"] == "2.1.0"
    assert sarif["$schema"].endswith("sarif-2.1.0.json")
    assert len(sarif["runs"]) == 1
    return sarif["runs"][0]


def test_driver_lists_the_selected_rules_from_the_real_catalogue():
    run = _run()
    driver = run["tool"]["driver"]
    assert driver["name"] == "evalguard"
    assert driver["version"]
    assert "informationUri" not in driver  # no documentation site exists; rule help is inline
    ids = [rule["id"] for rule in driver["rules"]]
    assert ids == sorted(set(metadata()["selected"]))
    for rule in driver["rules"]:
        assert rule["name"] and "-" in rule["name"]
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
        assert rule["help"]["text"] and rule["help"]["markdown"].startswith("**")
        assert "helpUri" not in rule          # help text is inline: there is no docs site to link
        assert rule["defaultConfiguration"]["level"] in LEVELS


def test_results_point_at_their_rule_and_carry_the_finding():
    report = blocked_report()
    run = _run(report)
    rules = run["tool"]["driver"]["rules"]
    assert len(run["results"]) == len(report.findings)
    expected_level = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
    for result, finding in zip(run["results"], report.findings):
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == finding.rule
        assert result["level"] == expected_level[finding.severity]
        assert result["message"]["text"] == finding.message
        assert len(result["partialFingerprints"][FINGERPRINT_KEY]) == 32


def test_source_findings_have_a_physical_region():
    run = _run()
    source = [r for r in run["results"] if r["ruleId"] in ("EG105", "EG301")]
    assert [r["locations"][0]["physicalLocation"]["region"] for r in source] == [
        {"startLine": 42, "startColumn": 16}, {"startLine": 88, "startColumn": 17}]
    for r in source:
        artifact = r["locations"][0]["physicalLocation"]["artifactLocation"]
        assert artifact == {"uri": SOURCE, "uriBaseId": "%SRCROOT%"}
        assert "logicalLocations" not in r["locations"][0]


def test_model_findings_have_a_logical_module_location_and_the_file_at_line_1():
    run = _run()
    eg101 = next(r for r in run["results"] if r["ruleId"] == "EG101")
    location = eg101["locations"][0]
    assert location["logicalLocations"] == [{"fullyQualifiedName": "features.3", "kind": "module"}]
    # GitHub code scanning needs a region with startLine on every result (issue 30): a model file's is line 1
    assert location["physicalLocation"] == {"artifactLocation": {"uri": MODEL, "uriBaseId": "%SRCROOT%"},
                                            "region": {"startLine": 1}}
    eg401 = next(r for r in run["results"] if r["ruleId"] == "EG401")
    assert "logicalLocations" not in eg401["locations"][0]
    assert eg401["properties"]["evidence"]["atol"] == 1e-4


def test_fingerprints_survive_retraining_and_code_moves():
    report = blocked_report()
    moved = []
    for f in report.findings:
        loc = f.location
        line = None if loc.line is None else loc.line + 7
        moved.append(replace(f, message=f.message.replace("0.4137", "0.2291").replace("75%", "61%"),
                             location=replace(loc, line=line)))
    before = [r["partialFingerprints"] for r in _run(report)["results"]]
    after = [r["partialFingerprints"] for r in _run(replace(report, findings=tuple(moved)))["results"]]
    assert before == after
    assert len({fp[FINGERPRINT_KEY] for fp in before}) == len(before)


def test_same_findings_as_the_json_report():
    report = blocked_report()
    data = json_report.report_to_dict(report)
    from_json = {(f["rule"], f["location"]["path"], f["location"]["line"] or 1, f["location"]["module"])
                 for f in data["findings"]}
    from_sarif = set()
    for r in _run(report)["results"]:
        loc = r["locations"][0]
        region = loc["physicalLocation"]["region"]
        module = loc["logicalLocations"][0]["fullyQualifiedName"] if "logicalLocations" in loc else None
        from_sarif.add((r["ruleId"], loc["physicalLocation"]["artifactLocation"]["uri"],
                        region.get("startLine"), module))
    assert from_sarif == from_json


def test_targets_that_could_not_be_audited_become_failed_invocations():
    invocation = _run(error_target_report())["invocations"][0]
    assert invocation["executionSuccessful"] is False
    (note,) = invocation["toolExecutionNotifications"]
    assert note["level"] == "error" and "file is empty" in note["message"]["text"]
    assert note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "models/broken.pt"
    assert _run()["invocations"][0]["executionSuccessful"] is True


def test_factory_targets_point_at_their_file_or_have_no_file():
    assert artifact_uri("examples/demo.py:build_model") == ("examples/demo.py", True)
    assert artifact_uri("./models\\my model.pt") == ("models/my%20model.pt", True)
    assert artifact_uri("mypkg.models:build") is None
    finding = Finding("EG101", "in training mode", Location("mypkg.models:build", module="drop"),
                      {}, Severity.ERROR, "model-in-training-mode")
    report = Report((TargetResult("mypkg.models:build", "factory", "audited"),), (finding,), {})
    (result,) = report_to_sarif(report)["runs"][0]["results"]
    assert result["locations"] == [{"logicalLocations": [{"fullyQualifiedName": "drop", "kind": "module"}]}]


def test_without_selected_rules_the_whole_catalogue_is_listed_and_unknown_rules_still_resolve():
    finding = Finding("EG999", "from a future check", Location("m.pt"), {}, Severity.WARNING, "future-rule")
    run = report_to_sarif(Report((TargetResult("m.pt", "state-dict", "audited"),), (finding,), {}))["runs"][0]
    ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert "EG101" in ids and "EG999" in ids
    (result,) = run["results"]
    assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == "EG999"
