"""What a check returns: ``CheckOutcome(findings, facts, coverage)``.

A check never decides severities or whether a target passed; it says what it found, what it
learned (typed facts from ``evalguard.facts``) and, for every rule it owns, whether that rule
*ran* on this target or was *skipped* and why. The engine turns this into the per-target
coverage that every report shows (passed / failed / skipped / not-applicable), so a rule that
did not run can never be presented as passed.

Nothing here imports torch.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from evalguard.findings import Finding

RAN = "ran"
SKIPPED = "skipped"
NOT_APPLICABLE = "not-applicable"


@dataclass(frozen=True)
class RuleRun:
    """A check's word on one rule it owns: ``ran``, or ``skipped`` with the reason."""

    status: str
    reason: str | None = None


@dataclass(frozen=True)
class CheckOutcome:
    findings: tuple[Finding, ...] = ()
    facts: tuple = ()                                  # instances of evalguard.facts classes
    coverage: Mapping[str, RuleRun] = field(default_factory=dict)
    #: The target could not be audited because *user code* failed (its forward raised, its
    #: inputs could not be built): one line each. Never used for evalguard's own bugs.
    target_errors: tuple[str, ...] = ()
    #: evalguard's own steps that failed without ending the check (a probe riding on a pass):
    #: each becomes one EG900 naming the step. Never the user's fault.
    internal: tuple[InternalFailure, ...] = ()


@dataclass(frozen=True)
class InternalFailure:
    """One of evalguard's own steps raised ``exception``; ``rules`` are the rules it left unchecked."""

    step: str
    exception: BaseException
    rules: tuple[str, ...] = ()


class Outcome:
    """Collects a check's results; ``done()`` freezes them into a ``CheckOutcome``.

    ``ran`` and ``skip`` only record rules that are selected; the first word on a rule wins
    unless a later ``skip`` explains why a rule that had started could not finish.
    """

    def __init__(self, options, rules: Iterable[str]):
        self.selected = [rule for rule in rules if rule in options.selected]
        self.findings: list[Finding] = []
        self.facts: list = []
        self.coverage: dict[str, RuleRun] = {}
        self.errors: list[str] = []
        self.internal: list[InternalFailure] = []

    def add(self, *findings: Finding) -> None:
        self.findings.extend(findings)

    def extend(self, findings: Iterable[Finding]) -> None:
        self.findings.extend(findings)

    def fact(self, fact) -> None:
        if fact is not None:
            self.facts.append(fact)

    def ran(self, *rules: str) -> None:
        for rule in rules:
            if rule in self.selected:
                self.coverage.setdefault(rule, RuleRun(RAN))

    def skip(self, rules: Iterable[str] | str, reason: str, *, override: bool = False) -> None:
        for rule in ([rules] if isinstance(rules, str) else rules):
            if rule in self.selected and (override or rule not in self.coverage):
                self.coverage[rule] = RuleRun(SKIPPED, reason)

    def not_applicable(self, rules: Iterable[str] | str, reason: str) -> None:
        """The rule has nothing to judge on this target as configured (e.g. EG405 without
        --device cuda): reported as not-applicable, which does not hold back the verdict."""
        for rule in ([rules] if isinstance(rules, str) else rules):
            if rule in self.selected:
                self.coverage[rule] = RuleRun(NOT_APPLICABLE, reason)

    def error(self, message: str, rules: Iterable[str] | None = None) -> None:
        """User code failed: the target cannot be audited; ``rules`` (default: all not yet
        judged) are skipped with that reason."""
        if message not in self.errors:
            self.errors.append(message)
        pending = [r for r in (rules or self.selected) if r not in self.coverage]
        self.skip(pending, message)

    def internal_error(self, failure: InternalFailure) -> None:
        """evalguard's own ``failure.step`` raised: EG900 naming it (the check itself went on)."""
        self.internal.append(failure)

    def done(self) -> CheckOutcome:
        return CheckOutcome(tuple(self.findings), tuple(self.facts), dict(self.coverage), tuple(self.errors),
                            tuple(self.internal))
