"""The JSON report (a contract: DESIGN.md). Other renderers build on ``report_to_dict``."""
from __future__ import annotations

import json

from evalguard.findings import Finding, Location, Report, RuleCoverage, Severity, TargetResult, TargetUsage
from evalguard.jsonvalues import jsonable  # noqa: F401 - the reporters' name for it

#: 2: targets[].coverage (every selected rule: passed/failed/skipped/not-applicable, with a
#: reason) and targets[].facts (typed facts by family) replace the untyped targets[].info.
SCHEMA_VERSION = 2


def finding_to_dict(finding: Finding) -> dict:
    loc = finding.location
    return {
        "rule": finding.rule,
        "name": finding.name,
        "severity": str(finding.severity),
        "message": finding.message,
        "location": {"path": loc.path, "line": loc.line, "column": loc.column, "module": loc.module},
        "evidence": jsonable(dict(finding.evidence)),
    }


def target_to_dict(target: TargetResult) -> dict:
    from evalguard.facts import to_json

    data = {"path": target.path, "kind": target.kind, "status": target.status}
    if target.detail:
        data["detail"] = target.detail
    data["coverage"] = {rule: {"status": c.status, "reason": c.reason} for rule, c in target.coverage.items()}
    if target.facts:
        data["facts"] = {family: to_json(fact) for family, fact in target.facts.items()}
    if target.usage is not None:
        data["usage"] = {"seconds": round(target.usage.seconds, 3), "peak_rss_bytes": target.usage.peak_rss_bytes}
    return data


def report_to_dict(report: Report) -> dict:
    from evalguard._version import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "evalguard", "version": __version__},
        "run": jsonable(dict(report.metadata)),
        "targets": [target_to_dict(t) for t in report.targets],
        "findings": [finding_to_dict(f) for f in report.findings],
        "summary": report.summary,
    }


def render(report: Report, *, color: bool = False) -> str:
    return json.dumps(report_to_dict(report), indent=2, sort_keys=False) + "\n"


# ------------------------------------------------------------------ reading a report back
def finding_from_dict(data: dict) -> Finding:
    loc = data.get("location") or {}
    return Finding(rule=data["rule"], message=data.get("message", ""),
                   location=Location(path=loc.get("path", ""), line=loc.get("line"), column=loc.get("column"),
                                     module=loc.get("module")),
                   evidence=data.get("evidence") or {},
                   severity=Severity.parse(data["severity"]) if data.get("severity") else None,
                   name=data.get("name", ""))


def target_from_dict(data: dict) -> TargetResult:
    from evalguard.facts import FACT_TYPES, from_json

    facts = {family: from_json(FACT_TYPES[family], value)
             for family, value in (data.get("facts") or {}).items() if family in FACT_TYPES}
    coverage = {rule: RuleCoverage(c.get("status", ""), c.get("reason"))
                for rule, c in (data.get("coverage") or {}).items()}
    usage = data.get("usage")
    return TargetResult(data["path"], data.get("kind", "unknown"), data.get("status", "error"),
                        data.get("detail", ""), coverage, facts,
                        TargetUsage(float(usage["seconds"]), usage.get("peak_rss_bytes")) if usage else None)


def report_from_dict(data: dict) -> Report:
    """The inverse of ``report_to_dict`` (for ``evalguard merge``); raises ValueError on
    a document that is not an evalguard JSON report of this schema."""
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"not an evalguard JSON report with schema_version {SCHEMA_VERSION}")
    try:
        return Report(targets=tuple(target_from_dict(t) for t in data["targets"]),
                      findings=tuple(finding_from_dict(f) for f in data["findings"]),
                      metadata=data.get("run") or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed evalguard report: {exc}") from None
