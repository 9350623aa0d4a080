"""SARIF 2.1.0, the format GitHub code scanning and most CI dashboards ingest.

Source findings carry a physical location (file, line, column). Model findings point at the
model file with a region on line 1 (GitHub code scanning rejects a result without
``startLine``) and name the module as a logical location, because a module path is the only
"line number" a model has.
"""
from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from evalguard import catalogue as rule_catalogue
from evalguard.catalogue import Rule
from evalguard.findings import Finding, Report, Severity
from evalguard.reporters._common import artifact_path
from evalguard.reporters.baseline import FINGERPRINT_KEY, fingerprint
from evalguard.reporters.json_report import jsonable, target_to_dict

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"

LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def artifact_uri(path: str) -> tuple[str, bool] | None:
    """(uri, relative?) for a location path; relative URIs resolve against the checkout root."""
    file = artifact_path(path)
    if file is None:
        return None
    pure = Path(file)
    if pure.is_absolute():
        try:
            file = pure.resolve().relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            return pure.resolve().as_uri(), False
    return quote(PurePosixPath(file).as_posix(), safe="/"), True


def _artifact_location(path: str) -> dict | None:
    found = artifact_uri(path)
    if found is None:
        return None
    uri, relative = found
    location = {"uri": uri}
    if relative:
        location["uriBaseId"] = "%SRCROOT%"
    return location


def rule_descriptor(rule: Rule) -> dict:
    markdown = [f"**{rule.title}**", "", rule.summary, "", "### Why this matters", "", rule.why,
                "", "### How to fix it", "", rule.fix]
    if rule.known_problems:
        markdown += ["", "### Known problems", "", rule.known_problems]
    if rule.references:
        markdown += ["", "### References", ""] + [f"- {ref}" for ref in rule.references]
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.summary},
        "help": {"text": f"{rule.why}\n\nFix: {rule.fix}", "markdown": "\n".join(markdown)},
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {"tags": ["evalguard", "pytorch"], "status": rule.status},
    }


def _rule_ids(report: Report, catalogue: dict[str, Rule]) -> list[str]:
    selected = report.metadata.get("selected")
    ids = set(selected) if selected else set(catalogue)
    ids.update(f.rule for f in report.findings)
    return sorted(ids)


def _fallback_rule(rule_id: str, finding: Finding | None) -> dict:
    level = LEVELS.get(finding.severity, "warning") if finding else "warning"
    name = finding.name if finding and finding.name else rule_id
    return {"id": rule_id, "name": name, "shortDescription": {"text": name},
            "defaultConfiguration": {"level": level}}


def result(finding: Finding, rule_index: int) -> dict:
    loc = finding.location
    location: dict = {}
    artifact = _artifact_location(loc.path)
    if artifact is not None:
        physical: dict = {"artifactLocation": artifact}
        region = {"startLine": loc.line if loc.line is not None else 1}   # a model file: its start
        if loc.line is not None and loc.column is not None:
            region["startColumn"] = loc.column   # Location.column is 1-based, like SARIF
        physical["region"] = region
        location["physicalLocation"] = physical
    if loc.module:
        location["logicalLocations"] = [{"fullyQualifiedName": loc.module, "kind": "module"}]
    entry = {
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": LEVELS.get(finding.severity, "warning"),
        "message": {"text": finding.message},
        "locations": [location] if location else [],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(finding)},
    }
    if finding.evidence:
        entry["properties"] = {"evidence": jsonable(dict(finding.evidence))}
    return entry


def _notifications(report: Report) -> list[dict]:
    notes = []
    for target in report.targets:
        if target.status != "error":
            continue
        note = {"level": "error", "message": {"text": f"{target.path}: could not be audited: {target.detail}"},
                "descriptor": {"id": "target-error"}}
        artifact = _artifact_location(target.path)
        if artifact is not None:
            note["locations"] = [{"physicalLocation": {"artifactLocation": artifact}}]
        notes.append(note)
    return notes


def report_to_sarif(report: Report) -> dict:
    from evalguard._version import __version__

    catalogue = rule_catalogue.load_catalogue()
    rule_ids = _rule_ids(report, catalogue)
    first = {}
    for finding in report.findings:
        first.setdefault(finding.rule, finding)
    rules = [rule_descriptor(catalogue[r]) if r in catalogue else _fallback_rule(r, first.get(r))
             for r in rule_ids]
    index = {rule_id: i for i, rule_id in enumerate(rule_ids)}
    notifications = _notifications(report)
    invocation = {"executionSuccessful": not notifications}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    command = report.metadata.get("command")
    if command:
        invocation["commandLine"] = command if isinstance(command, str) else " ".join(map(str, command))
    run = {
        "tool": {"driver": {"name": "evalguard", "version": __version__,
                            "semanticVersion": __version__,
                            "rules": rules}},
        "originalUriBaseIds": {"%SRCROOT%": {"description": {"text": "The directory evalguard ran in."}}},
        "invocations": [invocation],
        "results": [result(f, index[f.rule]) for f in report.findings],
        "properties": {"metadata": jsonable(dict(report.metadata)),
                       "targets": [target_to_dict(t) for t in report.targets]},
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def render(report: Report, *, color: bool = False) -> str:
    return json.dumps(report_to_sarif(report), indent=2) + "\n"
