"""Terminal output in the style of ruff/pytest.

One line per finding (source findings also show the offending line with a caret under the
column, as ruff does), then what did not run, one context line per audited model (inputs,
weights, ONNX), and a summary line.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from evalguard.facts import worst_abs_error
from evalguard.findings import FAILED, PASSED, Report, Severity, TargetResult

_COLOURS = {Severity.ERROR: "\033[31m", Severity.WARNING: "\033[33m", Severity.INFO: "\033[36m"}
_RESET = "\033[0m"
_BOLD = "\033[1m"
_NAME_CHARS = re.compile(r"[\w.]+")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# --------------------------------------------------------------------------- findings
def finding_line(finding, color: bool = False) -> str:
    where = finding.location.display()
    severity = str(finding.severity)
    if color:
        severity = f"{_COLOURS[finding.severity]}{severity}{_RESET}"
        where = f"{_BOLD}{where}{_RESET}"
    return f"{where} {finding.rule} {severity} {finding.name}: {finding.message}"


class SourceLines:
    """Source files read at most once per render; a file that cannot be read shows no snippet."""

    def __init__(self, preloaded: dict[str, str] | None = None):
        self._files: dict[str, list[str]] = {path: text.splitlines() for path, text in (preloaded or {}).items()}

    def line(self, path: str, number: int) -> str | None:
        if path not in self._files:
            try:
                self._files[path] = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                self._files[path] = []
        lines = self._files[path]
        return lines[number - 1] if 0 < number <= len(lines) else None


def snippet(finding, sources: SourceLines) -> list[str]:
    """The line a source finding points at, with carets under the name at its column::

          |
        3 | model = torch.load(path, weights_only=False)
          |         ^^^^^^^^^^
    """
    loc = finding.location
    if loc.line is None or loc.module or not loc.path.endswith(".py"):
        return []
    text = sources.line(loc.path, loc.line)
    if text is None:
        return []
    gutter = " " * len(str(loc.line))
    lines = [f"{gutter} |", f"{loc.line} | {text}"]
    if loc.column is not None and 0 < loc.column <= len(text.encode("utf-8")) + 1:
        # Columns count UTF-8 bytes (as Python's ast does); the caret goes under the character.
        start = len(text.encode("utf-8")[:loc.column - 1].decode("utf-8", errors="ignore"))
        name = _NAME_CHARS.match(text, start)
        width = len(name.group()) if name else 1
        indent = "".join("\t" if ch == "\t" else " " for ch in text[:start])
        lines.append(f"{gutter} | {indent}{'^' * width}")
    return lines


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


# --------------------------------------------------------------------------- what was audited
def _inputs(target: TargetResult) -> str | None:
    facts = target.facts.get("inputs")
    if facts is None or not facts.inputs:
        return None
    return f"inputs {', '.join(facts.inputs)} ({facts.source})"


def _weights(target: TargetResult) -> str | None:
    load = target.facts.get("load")
    weights = getattr(load, "weights", None)
    if weights is None or not weights.expected:
        return None
    return f"weights {weights.loaded}/{weights.expected} loaded"


def _worst_error(rows) -> str | None:
    worst = worst_abs_error(rows)
    return None if worst is None else f"{worst:.2g}"


def _onnx(target: TargetResult) -> str | None:
    parity = target.coverage.get("EG401")
    if parity is None or target.coverage.get("EG401").status not in (PASSED, FAILED):
        return "ONNX not run" if parity is not None and parity.status != "not-applicable" else None
    onnx = target.facts.get("onnx")
    worst = _worst_error(onnx.parity) if onnx is not None else None
    return "ONNX ran" + (f" (worst abs error {worst})" if worst is not None else "")


def context_line(target: TargetResult) -> str | None:
    """``model.pt: inputs x: float32[2x3x32x32] (--input-shape); weights 10/10 loaded; ONNX ran (...)``."""
    parts = [part for part in (_inputs(target), _weights(target), _onnx(target)) if part]
    return f"{target.path}: {'; '.join(parts)}" if parts else None


def summary_line(report: Report) -> str:
    counts = report.summary
    audited = sum(1 for t in report.targets if t.status == "audited")
    noun = "target" if len(report.targets) == 1 else "targets"
    parts = [_plural(counts[s], s) for s in ("error", "warning", "info")]
    summary = f"{len(report.targets)} {noun} ({audited} audited): " + ", ".join(parts)
    not_run = sum(len(rules) for rules in report.not_run().values())
    if not_run:
        summary += f" - {_plural(not_run, 'rule')} did not run"
    elif not report.findings and all(t.status == "audited" for t in report.targets):
        summary += " - all checks passed"
    return summary


# --------------------------------------------------------------------------- whole reports
#: Findings that explain others on the same target (a module left in training mode makes the
#: passes random and the ONNX file differ; NaN weights make every output wrong): printed first.
ROOT_CAUSES = ("EG101", "EG207")


def display_order(findings) -> list:
    """The report's findings with each target's root causes first; targets stay in report order
    and the rest keep the report's (path, line, module, rule) order. Only the terminal regroups:
    JSON keeps the sort contract."""
    first_seen: dict[str, int] = {}
    for finding in findings:
        first_seen.setdefault(finding.location.path, len(first_seen))
    ranked = sorted(enumerate(findings), key=lambda item: (first_seen[item[1].location.path],
                                                           item[1].rule not in ROOT_CAUSES, item[0]))
    return [finding for _, finding in ranked]


def render(report: Report, *, color: bool = False, quiet: bool = False, sources: dict[str, str] | None = None) -> str:
    """The terminal report; ``quiet`` keeps only the findings (as ``ruff --quiet``); ``sources``
    gives the text of files not on disk as audited (a source read from stdin)."""
    sources = SourceLines(sources)
    lines = []
    for finding in display_order(report.findings):
        lines.append(finding_line(finding, color))
        lines.extend(snippet(finding, sources))
    if not quiet:
        for target in report.targets:
            if target.status == "error":
                lines.append(f"{target.path}: could not be audited: {target.detail}")
        lines.extend(not_run_lines(report))
        lines.extend(filter(None, (context_line(t) for t in report.targets)))
        lines.append(summary_line(report))
    return "".join(line + "\n" for line in lines)


def statistics(report: Report, *, quiet: bool = False) -> str:
    """``--statistics``: how many findings each rule raised, most first (ruff's layout)."""
    counts = Counter((f.rule, f.name) for f in report.findings)
    width = max((len(str(n)) for n in counts.values()), default=1)
    lines = [f"{n:>{width}}\t{rule}\t{name}" for (rule, name), n in
             sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    lines.extend(usage_lines(report))
    if not quiet:
        lines.append(summary_line(report))
    return "".join(line + "\n" for line in lines)


def usage_lines(report: Report) -> list[str]:
    """``--statistics``: each model target's audit time and peak RSS, slowest first."""
    measured = sorted((t for t in report.targets if t.usage is not None), key=lambda t: -t.usage.seconds)
    if not measured:
        return []
    lines = ["", "seconds\tpeak RSS\ttarget"]
    for target in measured:
        peak = target.usage.peak_rss_bytes
        lines.append(f"{target.usage.seconds:7.1f}\t{f'{peak / (1 << 20):.0f} MiB' if peak else '-'}\t{target.path}")
    return lines
