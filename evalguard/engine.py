"""The audit pipeline: load each target, run the checks that apply, then apply policy
(selection, severities, suppressions) and sort. Checks find; the engine decides.
"""
from __future__ import annotations

import traceback
from dataclasses import replace
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Iterable, Mapping

from evalguard.catalogue import load_catalogue
from evalguard.checks import CHECKS, CheckSpec
from evalguard.errors import RefusedTarget, TargetError
from evalguard.findings import Finding, Location, Report, Severity, TargetResult
from evalguard.subject import AuditOptions, AuditSubject
from evalguard.suppression import is_suppressed


def _version(package: str) -> str:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "not installed"


def run_metadata(options: AuditOptions, extra: Mapping | None = None) -> dict:
    import platform

    from evalguard import __version__

    data = {
        "versions": {"evalguard": __version__, "python": platform.python_version(),
                     **{p: _version(p) for p in ("torch", "onnx", "onnxruntime")}},
        "seed": options.seed,
        "device": options.device,
        "selected": sorted(options.selected),
    }
    data.update(extra or {})
    return data


def _debug_traceback(options: AuditOptions) -> None:
    if options.debug:
        traceback.print_exc()


def checks_for(subject: AuditSubject, options: AuditOptions) -> list[CheckSpec]:
    return [spec for spec in CHECKS
            if subject.kind in spec.kinds and spec.enabled(options)
            and any(rule in options.selected for rule in spec.rules)]


def run_checks(subject: AuditSubject, options: AuditOptions) -> tuple[list[Finding], list[str]]:
    """Run every applicable check. A crashing check becomes one EG900 finding; a check that
    finds the target cannot be audited (e.g. forward raises) records the reason, and the
    other checks still run. Returns (findings, reasons the target could not be audited)."""
    findings: list[Finding] = []
    failures: list[str] = []
    for spec in checks_for(subject, options):
        try:
            findings.extend(spec.load()(subject, options))
        except TargetError as exc:
            _debug_traceback(options)
            if str(exc) not in failures:
                failures.append(str(exc))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a broken check must not hide the others
            _debug_traceback(options)
            frames = traceback.extract_tb(exc.__traceback__)
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
            findings.append(Finding(
                rule="EG900",
                message=f"check '{spec.name}' crashed: {type(exc).__name__}: {exc}".splitlines()[0][:300],
                location=Location(path=subject.path),
                evidence={"check": spec.name, "rules_not_checked": list(spec.rules),
                          "exception": type(exc).__name__, "raised_at": where},
            ))
    return findings, failures


def apply_policy(findings: Iterable[Finding], options: AuditOptions,
                 severity_overrides: Mapping[str, Severity] | None = None,
                 sources: Mapping[str, str] | None = None) -> list[Finding]:
    """Keep selected rules, set name and severity, drop suppressed lines, dedupe and sort.

    A severity set by the check itself (e.g. info for an allowed stochastic module) is kept
    unless the configuration overrides that rule.
    """
    catalogue = load_catalogue()
    overrides = severity_overrides or {}
    source_lines: dict[str, list[str]] = {}
    kept = {}
    for finding in findings:
        if finding.rule not in options.selected:
            continue
        rule = catalogue[finding.rule]
        severity = overrides.get(finding.rule) or finding.severity or rule.severity
        finding = finding.with_policy(severity, rule.name)
        line = finding.location.line
        if line is not None:
            path = finding.location.path
            if path not in source_lines:  # text the loader already read is reused, else read once
                text = (sources or {}).get(path)
                source_lines[path] = text.splitlines() if text is not None else _read_lines(path)
            lines = source_lines[path]
            if 0 < line <= len(lines) and is_suppressed(finding.rule, lines[line - 1]):
                continue
        kept.setdefault((finding.sort_key(), finding.rule), finding)
    return sorted(kept.values(), key=Finding.sort_key)


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def audit_subject(subject: AuditSubject, options: AuditOptions,
                  severity_overrides: Mapping[str, Severity] | None = None) -> tuple[TargetResult, list[Finding]]:
    """Audit one already-loaded subject (the Python API enters here)."""
    raw, failures = run_checks(subject, options)
    sources = {subject.path: subject.source_text} if subject.source_text is not None else None
    findings = apply_policy(raw, options, severity_overrides, sources)
    status, detail = ("error", "; ".join(failures)) if failures else ("audited", "")
    return TargetResult(subject.path, subject.kind, status, detail, dict(subject.info)), findings


def audit(targets: list[str], options: AuditOptions,
          severity_overrides: Mapping[str, Severity] | None = None,
          metadata: Mapping | None = None) -> Report:
    """Audit command-line targets (or the ``--model`` factory alone when there are none)."""
    from evalguard.loading import load_factory_subject, load_target
    from evalguard.loading.discover import expand_targets

    results: list[TargetResult] = []
    findings: list[Finding] = []

    def audit_loaded(load, display_path: str) -> None:
        try:
            subject = load()
        except RefusedTarget as exc:
            results.append(TargetResult(display_path, exc.kind, "refused", str(exc)))
            findings.extend(apply_policy(exc.findings, options, severity_overrides))
            return
        except TargetError as exc:
            _debug_traceback(options)
            results.append(TargetResult(display_path, "unknown", "error", str(exc)))
            return
        except SystemExit as exc:  # code from a (trusted) package tried to end the run
            results.append(TargetResult(display_path, "unknown", "error",
                                        f"{display_path}: loading it tried to exit the process (SystemExit {exc.code!r})"))
            return
        result, subject_findings = audit_subject(subject, options, severity_overrides)
        results.append(result)
        findings.extend(subject_findings)

    if not targets and options.model_factory:
        audit_loaded(lambda: load_factory_subject(options), options.model_factory)
    for path in expand_targets(targets, options.exclude):
        audit_loaded(lambda path=path: load_target(path, options), path)

    ordered = sorted(findings, key=Finding.sort_key)
    return Report(targets=tuple(results), findings=tuple(ordered),
                  metadata=run_metadata(options, metadata))


def with_findings(report: Report, findings: Iterable[Finding]) -> Report:
    return replace(report, findings=tuple(sorted(findings, key=Finding.sort_key)))
