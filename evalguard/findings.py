"""The data model every other part speaks: severities, locations, findings, reports.

Everything here is a frozen dataclass so a finding can be hashed, sorted and compared;
nothing here imports torch.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


class Severity(enum.IntEnum):
    """Ordered so that ``Severity.WARNING >= Severity.INFO`` reads naturally."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (expected info, warning or error)") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Location:
    """Where a finding points: a file, optionally a line/column (source) or a module path (model)."""

    path: str
    line: int | None = None
    column: int | None = None
    module: str | None = None

    def sort_key(self) -> tuple:
        return (self.path, self.line or 0, self.column or 0, self.module or "")

    def display(self, with_module: bool = True) -> str:
        """``path:line:column::module``, leaving out the parts that are not set."""
        text = self.path
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        if self.module and with_module:
            text += f"::{self.module}"
        return text


@dataclass(frozen=True)
class Finding:
    """One problem found by one rule.

    Checks create findings with ``severity=None`` and ``name=""``; the engine fills both in
    from the catalogue and the configuration, so a check never decides policy.
    """

    rule: str
    message: str
    location: Location
    evidence: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    severity: Severity | None = None
    name: str = ""

    def sort_key(self) -> tuple:
        return (*self.location.sort_key(), self.rule, self.message)

    def with_policy(self, severity: Severity, name: str) -> Finding:
        return replace(self, severity=severity, name=name)


#: Coverage statuses of one selected rule on one target (JSON ``targets[].coverage``).
PASSED, FAILED, SKIPPED, NOT_APPLICABLE = "passed", "failed", "skipped", "not-applicable"


@dataclass(frozen=True)
class RuleCoverage:
    status: str                 # passed | failed | skipped | not-applicable
    reason: str | None = None


@dataclass(frozen=True)
class TargetResult:
    """What happened to one target: its detected kind and whether it could be audited.

    status is ``audited``, ``refused`` (unsafe file: findings explain why) or ``error``
    (could not be read or run at all; ``detail`` holds the one-line reason). ``coverage`` says,
    for every selected rule, whether it passed, failed, was skipped (and why) or does not apply;
    ``facts`` maps a family name to its typed facts (``evalguard.facts``).
    """

    path: str
    kind: str
    status: str
    detail: str = ""
    coverage: Mapping[str, RuleCoverage] = field(default_factory=dict, compare=False, hash=False)
    facts: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    usage: TargetUsage | None = field(default=None, compare=False, hash=False)

    def not_run(self) -> dict[str, RuleCoverage]:
        """Selected, applicable rules that did not run on this target."""
        return {rule: c for rule, c in self.coverage.items() if c.status == SKIPPED}


@dataclass(frozen=True)
class TargetUsage:
    """What one target's audit cost: wall seconds from when it started running (queueing and
    worker start-up excluded) and the peak RSS of the worker that audited it (None in-process)."""

    seconds: float
    peak_rss_bytes: int | None = None


@dataclass(frozen=True)
class Report:
    targets: tuple[TargetResult, ...]
    findings: tuple[Finding, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def summary(self) -> dict[str, int]:
        counts = {"error": 0, "warning": 0, "info": 0}
        for finding in self.findings:
            counts[str(finding.severity)] += 1
        return counts

    def at_or_above(self, threshold: Severity) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is not None and f.severity >= threshold)

    def not_run(self) -> dict[str, dict[str, RuleCoverage]]:
        """target path -> the selected, applicable rules that did not run there."""
        return {t.path: t.not_run() for t in self.targets if t.not_run()}

    def ok(self, fail_on: str | Severity = "error") -> bool:
        """True when every target was audited and nothing is at or above ``fail_on``."""
        threshold = fail_on if isinstance(fail_on, Severity) else Severity.parse(fail_on)
        return all(t.status == "audited" for t in self.targets) and not self.at_or_above(threshold)

    def to_json(self) -> str:
        from evalguard.reporters import render

        return render(self, "json")

    def to_html(self, path: str | None = None) -> str:
        """The HTML audit report; written to ``path`` when given."""
        from pathlib import Path

        from evalguard.reporters import render

        html = render(self, "html")
        if path is not None:
            Path(path).write_text(html, encoding="utf-8")
        return html
