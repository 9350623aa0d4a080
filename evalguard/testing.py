"""Assertions for a team's own test suite."""
from __future__ import annotations

from evalguard.findings import Report, Severity


def format_findings(report: Report, threshold: Severity) -> str:
    lines = []
    for target in report.targets:
        if target.status != "audited":
            lines.append(f"  {target.path}: could not be audited: {target.detail}")
    for finding in report.at_or_above(threshold):
        where = finding.location.module or finding.location.path
        lines.append(f"  {finding.rule} {finding.severity} {finding.name} at {where}: {finding.message}")
    return "\n".join(lines)


def assert_inference_safe(model, example_inputs, *, fail_on: str = "error", **options) -> Report:
    """Audit ``model`` and raise ``AssertionError`` listing every finding at or above ``fail_on``.

    Takes the keyword options of :func:`evalguard.audit`; returns the report when it passes.
    """
    __tracebackhide__ = True   # pytest shows the caller's line, not this function's
    from evalguard.api import audit

    threshold = Severity.parse(fail_on)
    report = audit(model, example_inputs, **options)
    if not report.ok(threshold):
        count = len(report.at_or_above(threshold))
        raise AssertionError(f"evalguard: {count} finding(s) at or above {threshold}:\n"
                             + format_findings(report, threshold))
    return report
