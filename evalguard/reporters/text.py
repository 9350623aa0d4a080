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


def not_run_lines(report: Report) -> list[str]:
    """One line per target and reason: which selected rules did not run there, and why."""
    lines = []
    for path, rules in report.not_run().items():
        by_reason: dict[str, list[str]] = {}
        for rule, coverage in rules.items():
            by_reason.setdefault(coverage.reason or "no reason recorded", []).append(rule)
        for reason, ids in by_reason.items():
            lines.append(f"{path}: not checked: {', '.join(ids)}: {reason}")
    return lines


def render(report: Report, *, color: bool = False) -> str:
    lines = [finding_line(f, color) for f in report.findings]
    for target in report.targets:
        if target.status == "error":
            lines.append(f"{target.path}: could not be audited: {target.detail}")
    lines.extend(not_run_lines(report))
    counts = report.summary
    audited = sum(1 for t in report.targets if t.status == "audited")
    parts = [f"{counts[s]} {s}{'' if counts[s] == 1 else 's'}" for s in ("error", "warning", "info")]
    noun = "target" if len(report.targets) == 1 else "targets"
    summary = f"{len(report.targets)} {noun} ({audited} audited): " + ", ".join(parts)
    not_run = sum(len(rules) for rules in report.not_run().values())
    if not_run:
        summary += f" - {not_run} check{'' if not_run == 1 else 's'} did not run"
    elif not report.findings and all(t.status == "audited" for t in report.targets):
        summary += " - all checks passed"
    lines.append(summary)
    return "\n".join(lines) + "\n"
