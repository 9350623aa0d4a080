"""JUnit XML: one test suite per target, one test case per rule checked on it.

CI systems (GitLab, Jenkins, Azure) show JUnit results as a test list, so a rule that ran and
found nothing is a passing test, a finding at or above ``--fail-on`` is a failure, one below
it is a passing test with the finding in ``system-out``, a rule that did not run is
``<skipped>`` with the reason (never a pass), and a target that could not be read is an error.
Rules that do not apply to a target (source rules on a checkpoint) are left out.
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from evalguard.findings import Finding, Report
from evalguard.reporters._common import fail_on, findings_by_target
from evalguard.reporters.json_report import jsonable

# XML 1.0 cannot hold most control characters, even escaped; a message may carry them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _describe(finding: Finding) -> str:
    lines = [f"{finding.location.display()} {finding.rule} {finding.severity} {finding.name}: {finding.message}"]
    for key, value in jsonable(dict(finding.evidence)).items():
        lines.append(f"    {key}: {value if isinstance(value, str) else json.dumps(value)}")
    return _clean("\n".join(lines))


def _case_name(rule_id: str, names: dict[str, str]) -> str:
    return f"{rule_id} {names[rule_id]}" if names.get(rule_id) else rule_id


def _suite(path: str, target, findings: list[Finding], threshold, names) -> ET.Element:
    suite = ET.Element("testsuite", name=path)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if target is not None:
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="kind", value=target.kind)
        ET.SubElement(props, "property", name="status", value=target.status)
    if target is not None and target.status == "error":
        case = ET.SubElement(suite, "testcase", classname=path, name="load target")
        ET.SubElement(case, "error", message=_clean(target.detail or "could not be audited"),
                      type="target-error").text = _clean(target.detail)
        counts["tests"] = counts["errors"] = 1
    else:
        by_rule: dict[str, list[Finding]] = {}
        for finding in findings:
            by_rule.setdefault(finding.rule, []).append(finding)
        coverage = dict(target.coverage) if target is not None else {}
        checked = {rule for rule, c in coverage.items() if c.status != "not-applicable"}
        for rule_id in sorted(checked | set(by_rule)):
            case = ET.SubElement(suite, "testcase", classname=path, name=_case_name(rule_id, names))
            counts["tests"] += 1
            found = by_rule.get(rule_id, [])
            failing = [f for f in found if f.severity is not None and f.severity >= threshold]
            if failing:
                counts["failures"] += 1
                first = failing[0]
                message = first.message if len(failing) == 1 else f"{len(failing)} findings: {first.message}"
                ET.SubElement(case, "failure", message=_clean(message), type=rule_id).text = \
                    "\n".join(_describe(f) for f in failing)
            elif not found and rule_id in coverage and coverage[rule_id].status == "skipped":
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=_clean(coverage[rule_id].reason or "did not run"))
            passing = [f for f in found if f not in failing]
            if passing:
                ET.SubElement(case, "system-out").text = "\n".join(_describe(f) for f in passing)
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", "0")
    return suite


def report_to_junit(report: Report) -> ET.Element:
    from evalguard import catalogue

    names = {rule_id: rule.name for rule_id, rule in catalogue.load_catalogue().items()}
    names.update({f.rule: f.name for f in report.findings if f.name})
    threshold = fail_on(report)
    root = ET.Element("testsuites", name="evalguard")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for path, target, findings in findings_by_target(report):
        suite = _suite(path, target, findings, threshold, names)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key))
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", "0")
    return root


def render(report: Report, *, color: bool = False) -> str:
    root = report_to_junit(report)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
