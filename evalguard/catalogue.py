"""Reads the rule catalogue: one TOML file per rule, shipped inside the wheel.

The files live in the top-level ``rules/`` folder of the repository; the wheel build copies
them to ``evalguard/rules``. From a source checkout (editable install) we read the
top-level folder directly.
"""
from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from evalguard.findings import Severity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

REQUIRED_KEYS = ("id", "name", "title", "severity", "status", "summary", "why", "fix")
OPTIONAL_KEYS = ("description", "known_problems", "references", "examples")
STATUSES = ("implemented", "planned")


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    title: str
    severity: Severity
    status: str
    summary: str
    why: str
    fix: str
    description: str = ""          # the long "what it does"; summary is its one-line form
    known_problems: str = ""
    references: tuple[str, ...] = ()
    examples: dict = field(default_factory=dict, compare=False, hash=False)


def _rules_dir():
    packaged = resources.files("evalguard") / "rules"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "rules"


def parse_rule(text: str, filename: str) -> Rule:
    data = tomllib.loads(text)
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise ValueError(f"{filename}: missing keys {', '.join(missing)}")
    unknown = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ValueError(f"{filename}: unknown keys {', '.join(unknown)}")
    if filename.removesuffix(".toml") != data["id"]:
        raise ValueError(f"{filename}: id {data['id']} does not match the file name")
    if data["status"] not in STATUSES:
        raise ValueError(f"{filename}: status must be one of {STATUSES}")
    return Rule(
        id=data["id"], name=data["name"], title=data["title"],
        severity=Severity.parse(data["severity"]), status=data["status"],
        summary=data["summary"].strip(), why=data["why"].strip(), fix=data["fix"].strip(),
        description=data.get("description", "").strip(),
        known_problems=data.get("known_problems", "").strip(),
        references=tuple(data.get("references", ())),
        examples=dict(data.get("examples", {})),
    )


@functools.lru_cache(maxsize=1)
def load_catalogue() -> dict[str, Rule]:
    """All rules by id, in id order."""
    folder = _rules_dir()
    rules = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            rule = parse_rule(entry.read_text(encoding="utf-8"), entry.name)
            rules[rule.id] = rule
    return rules


def resolve_rule_selectors(selectors, catalogue: dict[str, Rule]) -> set[str]:
    """Expand ids and prefixes (``EG2``, ``EG20``) to rule ids; unknown selectors are errors."""
    chosen = set()
    for selector in selectors:
        token = selector.strip().upper()
        if not token:
            continue
        if token == "ALL":
            chosen.update(catalogue)
            continue
        matches = {rule_id for rule_id in catalogue if rule_id.startswith(token)}
        if not matches:
            raise ValueError(f"unknown rule id or prefix {selector!r} (see `evalguard rules`)")
        chosen.update(matches)
    return chosen
