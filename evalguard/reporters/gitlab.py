"""GitLab Code Quality report (``--format gitlab``): the JSON array GitLab reads from a job's
``artifacts:reports:codequality`` to show findings in merge requests.

Each finding is one issue: ``description``, ``check_name`` (the rule id), ``fingerprint`` (the
baseline's, stable across retraining and code moves), ``severity`` (GitLab's scale) and a
``location`` with a path relative to the project and a 1-based line (a model file's is 1).
"""
from __future__ import annotations

import json
from pathlib import Path

from evalguard.findings import Finding, Report, Severity
from evalguard.reporters._common import artifact_path
from evalguard.reporters.baseline import fingerprint

#: evalguard severity -> GitLab Code Quality severity (info, minor, major, critical, blocker).
SEVERITIES = {Severity.ERROR: "critical", Severity.WARNING: "major", Severity.INFO: "info"}


def relative_path(path: str) -> str:
    """The project-relative path GitLab links to (the file of a ``file.py:factory`` target)."""
    file = artifact_path(path) or path
    pure = Path(file)
    if pure.is_absolute():
        try:
            return pure.resolve().relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            return pure.as_posix()
    return pure.as_posix()


def issue(finding: Finding) -> dict:
    location = finding.location
    description = f"{finding.rule} {finding.name}: {finding.message}" if finding.name else finding.message
    if location.module:
        description += f" (module {location.module})"
    return {
        "type": "issue",
        "description": description,
        "check_name": finding.rule,
        "categories": ["Bug Risk"],
        "fingerprint": fingerprint(finding),
        "severity": SEVERITIES.get(finding.severity, "minor"),
        "location": {"path": relative_path(location.path), "lines": {"begin": location.line or 1}},
    }


def render(report: Report, *, color: bool = False) -> str:
    return json.dumps([issue(f) for f in report.findings], indent=2) + "\n"
