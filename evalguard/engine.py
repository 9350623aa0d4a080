"""The audit pipeline: load each target, run the checks that apply, then apply policy
(selection, severities, suppressions) and sort. Checks find; the engine decides.
"""
from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path

from evalguard.catalogue import load_catalogue
from evalguard.checks import ALWAYS_ON, CHECKS, ENGINE_RULES, CheckSpec
from evalguard.errors import InternalError, RefusedTarget, TargetError, UsageError
from evalguard.findings import (
    FAILED,
    NOT_APPLICABLE,
    PASSED,
    SKIPPED,
    Finding,
    Location,
    RuleCoverage,
    Severity,
    TargetResult,
)
from evalguard.outcome import RAN, CheckOutcome, RuleRun
from evalguard.subject import (
    FILE_KINDS,
    PICKLE_KINDS,
    PROGRAM_KINDS,
    AuditOptions,
    AuditSubject,
)
from evalguard.suppression import Suppressions


def _version(package: str) -> str:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "not installed"


def run_metadata(options: AuditOptions, extra: Mapping | None = None) -> dict:
    import platform

    from evalguard._version import __version__

    data = {
        "versions": {"evalguard": __version__, "python": platform.python_version(),
                     **{p: _version(p) for p in ("torch", "onnx", "onnxruntime")}},
        "seed": options.seed,
        "device": options.device,
        "selected": sorted(options.selected),
    }
    data.update(extra or {})
    return data


#: Called with the step an audit reaches ("loading", then each check's name): the worker
#: process reports it to the parent (the last step reached names where a crash happened) and
#: the progress line shows it. None: nobody is listening.
_step_listener: Callable[[str], None] | None = None


def set_step_listener(listener: Callable[[str], None] | None) -> Callable[[str], None] | None:
    """Install ``listener`` for audit steps; returns the previous one."""
    global _step_listener
    previous, _step_listener = _step_listener, listener
    return previous


def step_listener() -> Callable[[str], None] | None:
    return _step_listener


def _step(name: str) -> None:
    if _step_listener is not None:
        _step_listener(name)


def _debug_traceback(options: AuditOptions) -> None:
    if options.debug:
        traceback.print_exc()


def checks_for(subject: AuditSubject, options: AuditOptions) -> list[CheckSpec]:
    """Checks that handle this kind and own a selected rule (enabled or not: a disabled
    check's rules are reported as skipped, not silently left out)."""
    return [spec for spec in CHECKS
            if subject.kind in spec.kinds and any(rule in options.selected for rule in spec.rules)]


def _crash(spec_name: str, rules, path: str, exc: BaseException, options: AuditOptions) -> Finding:
    """EG900: evalguard's own code raised; the finding names the step and the rules it left unchecked."""
    _debug_traceback(options)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300] if str(exc) else type(exc).__name__
    return Finding(
        rule="EG900",
        message=f"internal error in evalguard's {spec_name}: {text}",
        location=Location(path=path),
        evidence={"check": spec_name, "rules_not_checked": sorted(rules),
                  "exception": type(exc).__name__, "raised_at": where},
    )


@dataclass
class _Checked:
    """The merged outcomes of every check on one subject."""

    findings: list[Finding] = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    runs: dict[str, RuleRun] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def run_checks(subject: AuditSubject, options: AuditOptions) -> _Checked:
    """Run every applicable check. A check that raises is evalguard's bug (EG900, its rules
    skipped); user code that fails (a forward that raises) comes back as the outcome's
    ``target_errors``, and the other checks still run."""
    checked = _Checked()
    for spec in checks_for(subject, options):
        owned = [rule for rule in spec.rules if rule in options.selected]
        if not spec.enabled(options):
            checked.runs.update({rule: RuleRun(SKIPPED, spec.disabled_reason or f"{spec.name} turned off")
                                 for rule in owned})
            continue
        if spec.needs_model and subject.no_model_reason:
            checked.runs.update({rule: RuleRun(SKIPPED, subject.no_model_reason) for rule in owned})
            continue
        _step(spec.name)
        try:
            outcome = spec.load()(subject, options)
            if not isinstance(outcome, CheckOutcome):
                raise TypeError(f"check returned {type(outcome).__name__}, not CheckOutcome")
        except (TargetError, SystemExit) as exc:   # raised from user code on the way (e.g. inputs cannot be built)
            _debug_traceback(options)
            if isinstance(exc, SystemExit):
                exc = TargetError(f"{subject.path}: the model's code tried to exit the process (SystemExit {exc.code!r})")
            _add_error(checked.errors, str(exc), subject.path)
            checked.runs.update({rule: RuleRun(SKIPPED, str(exc)) for rule in owned})
            continue
        except MemoryError:      # the target does not fit (e.g. under --memory-limit): not a bug
            _debug_traceback(options)
            message = f"ran out of memory in check '{spec.name}'"
            checked.errors.append(message)
            checked.runs.update({rule: RuleRun(SKIPPED, message) for rule in owned})
            continue
        except Exception as exc:  # noqa: BLE001 - evalguard's own bug: EG900, never the user's fault
            step = f"{exc.step} (check '{spec.name}')" if isinstance(exc, InternalError) else f"check '{spec.name}'"
            checked.findings.append(_crash(step, owned, subject.path, _cause(exc), options))
            checked.runs.update({rule: RuleRun(SKIPPED, f"check '{spec.name}' crashed (EG900)")
                                 for rule in owned})
            continue
        foreign = sorted({f.rule for f in outcome.findings} - set(spec.rules))
        if foreign:
            error = RuntimeError(f"check '{spec.name}' emitted rules it does not own: {', '.join(foreign)}")
            checked.findings.append(_crash(f"check '{spec.name}'", foreign, subject.path, error, options))
        checked.findings.extend(f for f in outcome.findings if f.rule in spec.rules)
        for fact in outcome.facts:
            checked.facts[fact.family] = fact
        for rule in owned:
            checked.runs[rule] = outcome.coverage.get(
                rule, RuleRun(SKIPPED, f"check '{spec.name}' did not report on this rule"))
        for message in outcome.target_errors:
            _add_error(checked.errors, message, subject.path)
        for failure in outcome.internal:
            checked.findings.append(_crash(f"{failure.step} (check '{spec.name}')", failure.rules, subject.path,
                                           failure.exception, options))
    return checked


def _cause(exc: BaseException) -> BaseException:
    """The exception an ``InternalError`` wraps (its type and line name the bug), else ``exc``."""
    return exc.cause if isinstance(exc, InternalError) else exc


def _add_error(errors: list[str], message: str, path: str) -> None:
    """Keep one message per failure: two checks failing on the same forward word it a little
    differently (one prefixes the target path, one describes the inputs in parentheses)."""
    def key(text: str) -> str:
        return re.sub(r" \((?:[^()]|\([^()]*\))*\)(?=:)", "", text.removeprefix(f"{path}: ")).strip()

    if key(message) not in {key(known) for known in errors}:
        errors.append(message)


def applicable_rules(kind: str) -> set[str]:
    """Rules that can fire on a target of this kind (engine rules included)."""
    rules = {rule for spec in CHECKS if kind in spec.kinds for rule in spec.rules}
    if not rules:
        return set()
    rules.add("EG900")
    if kind in PICKLE_KINDS:
        rules.update(("EG901", "EG902"))
    if kind in PROGRAM_KINDS:
        rules.update(("EG901", "EG904"))
    if kind in FILE_KINDS:
        rules.add("EG905")
    return rules


def coverage(kind: str, selected, findings: Iterable[Finding], runs: Mapping[str, RuleRun],
             status: str = "audited", detail: str = "") -> dict[str, RuleCoverage]:
    """Every selected rule's end state on one target: passed, failed, skipped or not-applicable."""
    applicable = applicable_rules(kind)
    fired = {f.rule for f in findings}
    result = {}
    for rule in sorted(selected):
        if rule in fired:
            result[rule] = RuleCoverage(FAILED)
        elif status in ("refused", "unloadable"):   # nothing ran on it: each rule says why
            result[rule] = _not_loaded(rule, applicable, status, detail)
        elif rule not in applicable:
            result[rule] = RuleCoverage(NOT_APPLICABLE, f"does not apply to a {kind} target")
        elif rule in ENGINE_RULES:      # the pickle scan ran (it runs before any load); no crash
            result[rule] = RuleCoverage(PASSED)
        elif rule in runs and runs[rule].status == RAN:
            result[rule] = RuleCoverage(PASSED)
        elif rule in runs and runs[rule].status == NOT_APPLICABLE:
            result[rule] = RuleCoverage(NOT_APPLICABLE, runs[rule].reason)
        elif rule in runs:
            result[rule] = RuleCoverage(SKIPPED, runs[rule].reason)
        else:
            result[rule] = RuleCoverage(SKIPPED, detail or "no check ran on this target")
    return result


def _not_loaded(rule: str, applicable: set[str], status: str, detail: str) -> RuleCoverage:
    """A rule on a target that was refused or could not be loaded: skipped with the reason (the
    safety scans that did run on the file, and raised nothing, passed)."""
    if rule in ENGINE_RULES and rule in applicable:
        return RuleCoverage(PASSED)
    if status == "refused":
        return RuleCoverage(SKIPPED, f"the file was refused: {detail}" if detail else "the file was refused and not loaded")
    return RuleCoverage(SKIPPED, f"could not be loaded: {detail}" if detail else "could not be loaded")


def _reason(message: str, path: str) -> str:
    """A loader message without the path it starts with (the coverage is already under that path)."""
    head, sep, rest = message.partition(": ")
    return rest if sep and (head == path or Path(head).name == Path(path).name) else message


def parse_severities(levels: Mapping[str, str]) -> dict[str, Severity]:
    """Rule id or rule name (any case) -> severity, as ``[tool.evalguard.severity]`` and
    ``evalguard.audit(severity=...)`` both take it. Raises ValueError naming an unknown rule or level."""
    catalogue = load_catalogue()
    by_name = {rule.name: rule.id for rule in catalogue.values()}
    overrides = {}
    for key, level in levels.items():
        rule_id = key.upper() if key.upper() in catalogue else by_name.get(key.lower())
        if rule_id is None:
            raise ValueError(f"names unknown rule {key!r} (see `evalguard rules`)")
        overrides[rule_id] = Severity.parse(level)
    return overrides


def apply_policy(findings: Iterable[Finding], options: AuditOptions,
                 severity_overrides: Mapping[str, Severity] | None = None,
                 sources: Mapping[str, str] | None = None) -> list[Finding]:
    """Keep selected rules, set name and severity, drop suppressed lines, dedupe and sort.

    A severity set by the check itself (e.g. info for an allowed stochastic module) is kept
    unless the configuration overrides that rule. EG900 and the refusal rules (``ALWAYS_ON``)
    are kept whatever the selection, at their catalogue severity: an internal crash or a refused
    file can never be deselected, ignored or downgraded.
    """
    catalogue = load_catalogue()
    overrides = severity_overrides or {}
    suppressions: dict[str, Suppressions] = {}
    kept = {}
    for finding in findings:
        always = finding.rule in ALWAYS_ON
        if finding.rule not in options.selected and not always:
            continue
        rule = catalogue[finding.rule]
        severity = rule.severity if always else overrides.get(finding.rule) or finding.severity or rule.severity
        finding = finding.with_policy(severity, rule.name)
        line = finding.location.line
        if line is not None:
            path = finding.location.path
            if path not in suppressions:  # text the loader already read is reused, else read once
                text = (sources or {}).get(path)
                suppressions[path] = Suppressions(text if text is not None else _read_text(path))
            if suppressions[path].suppresses(finding.rule, line):
                continue
        kept.setdefault((finding.sort_key(), finding.rule), finding)
    return sorted(kept.values(), key=Finding.sort_key)


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def audit_subject(subject: AuditSubject, options: AuditOptions,
                  severity_overrides: Mapping[str, Severity] | None = None) -> tuple[TargetResult, list[Finding]]:
    """Audit one already-loaded subject (the Python API enters here)."""
    if not checks_for(subject, options) and not applicable_rules(subject.kind):
        detail = f"no check handles a target of kind {subject.kind!r}"
        return TargetResult(subject.path, subject.kind, "error", detail,
                            coverage(subject.kind, options.selected, (), {}, "error", detail)), []
    checked = run_checks(subject, options)
    sources = {subject.path: subject.source_text} if subject.source_text is not None else None
    findings = apply_policy(checked.findings, options, severity_overrides, sources)
    status, detail = ("error", "; ".join(checked.errors)) if checked.errors else ("audited", "")
    facts = {}
    for fact in (subject.load, subject.input_facts(), *checked.facts.values()):
        if fact is not None:
            facts[fact.family] = fact
    return TargetResult(subject.path, subject.kind, status, detail,
                        coverage(subject.kind, options.selected, findings, checked.runs, status, detail),
                        facts), findings


def audit_one(load: Callable[[], AuditSubject], display_path: str, options: AuditOptions,
              severity_overrides: Mapping[str, Severity] | None = None) -> tuple[TargetResult, list[Finding]]:
    """Load one target and audit it. A refused file keeps its refusal findings; a file that
    cannot be read is a target error; an exception in evalguard's own loader is EG900."""
    _step("loading")
    try:
        subject = load()
    except RefusedTarget as exc:
        findings = apply_policy(exc.findings, options, severity_overrides)
        return TargetResult(display_path, exc.kind, "refused", str(exc),
                            coverage(exc.kind, options.selected, findings, {}, "refused",
                                     _reason(str(exc), display_path))), findings
    except TargetError as exc:
        _debug_traceback(options)
        return TargetResult(display_path, "unknown", "error", str(exc),
                            coverage("unknown", options.selected, (), {}, "unloadable",
                                     _reason(str(exc), display_path))), []
    except SystemExit as exc:  # code from a (trusted) package tried to end the run: never a silent exit
        return TargetResult(display_path, "unknown", "error",
                            f"{display_path}: loading it tried to exit the process (SystemExit {exc.code!r})"), []
    except UsageError:
        raise
    except MemoryError:
        _debug_traceback(options)
        return TargetResult(display_path, "unknown", "error", f"{display_path}: ran out of memory while loading"), []
    except Exception as exc:  # noqa: BLE001 - a bug in evalguard's loader is EG900, not the file's fault
        step = f"{exc.step} (loader)" if isinstance(exc, InternalError) else "loader"
        crash = _crash(step, sorted(options.selected), display_path, _cause(exc), options)
        detail = f"internal error in evalguard's loader (EG900): {crash.evidence['exception']}"
        return TargetResult(display_path, "unknown", "error", detail), apply_policy([crash], options,
                                                                                   severity_overrides)
    return audit_subject(subject, options, severity_overrides)


def audit_target(target, options: AuditOptions,
                 severity_overrides: Mapping[str, Severity] | None = None) -> tuple[TargetResult, list[Finding]]:
    """One planned target (``evalguard.execution.Target``) with its own --model and --onnx."""
    return audit_one(lambda: target.load(options), target.display, target.options_for(options),
                     severity_overrides)


def _with_usage(result: TargetResult, usage: tuple[float, int | None] | None) -> TargetResult:
    """The target's wall time and its worker's peak RSS (``evalguard.execution.progress``)."""
    from dataclasses import replace

    from evalguard.findings import TargetUsage

    if usage is None or result.path.endswith(".py"):
        return result
    seconds, peak_kib = usage
    return replace(result, usage=TargetUsage(seconds, peak_kib * 1024 if peak_kib else None))
