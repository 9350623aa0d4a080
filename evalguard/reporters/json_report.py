"""The JSON report (a contract: DESIGN.md). Other renderers build on ``report_to_dict``."""
from __future__ import annotations

import json
import math
from typing import Any

from evalguard.findings import Finding, Report, TargetResult

SCHEMA_VERSION = 1


def jsonable(value: Any) -> Any:
    """Plain JSON values only: non-finite floats become strings, tuples lists, others str()."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in items]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        return jsonable(value.item())
    return str(value)


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
    data = {"path": target.path, "kind": target.kind, "status": target.status}
    if target.detail:
        data["detail"] = target.detail
    if target.info:
        data["info"] = jsonable(dict(target.info))
    return data


def report_to_dict(report: Report) -> dict:
    from evalguard import __version__

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
