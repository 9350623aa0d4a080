"""Terminal output in the style of ruff/pytest: one line per finding, then a summary."""
from __future__ import annotations

from evalguard.findings import Report, Severity

_COLOURS = {Severity.ERROR: "\033[31m", Severity.WARNING: "\033[33m", Severity.INFO: "\033[36m"}
_RESET = "\033[0m"
_BOLD = "\033[1m"


def finding_line(finding, color: bool = False) -> str:
    where = finding.location.display()
    severity = str(finding.severity)
    if color:
        severity = f"{_COLOURS[finding.severity]}{severity}{_RESET}"
        where = f"{_BOLD}{where}{_RESET}"
    return f"{where} {finding.rule} {severity} {finding.name}: {finding.message}"


def render(report: Report, *, color: bool = False) -> str:
    lines = [finding_line(f, color) for f in report.findings]
    for target in report.targets:
        if target.status == "error":
            lines.append(f"{target.path}: could not be audited: {target.detail}")
    counts = report.summary
    audited = sum(1 for t in report.targets if t.status == "audited")
    parts = [f"{counts[s]} {s}{'' if counts[s] == 1 else 's'}" for s in ("error", "warning", "info")]
    noun = "target" if len(report.targets) == 1 else "targets"
    summary = f"{len(report.targets)} {noun} ({audited} audited): " + ", ".join(parts)
    if not report.findings and all(t.status == "audited" for t in report.targets):
        summary += " - all checks passed"
    lines.append(summary)
    return "\n".join(lines) + "\n"
