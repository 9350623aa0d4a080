"""In-source suppressions: ``# evalguard: ignore[EG301]`` (or a bare ``# evalguard: ignore``)."""
from __future__ import annotations

import re

_MARKER = re.compile(r"#\s*evalguard:\s*ignore(?:\[(?P<rules>[^\]]*)\])?", re.IGNORECASE)


def suppressed_rules(line: str) -> set[str] | None:
    """Rules suppressed on this line: a set of ids, ``{"*"}`` for all, None when no marker."""
    match = _MARKER.search(line)
    if not match:
        return None
    if match.group("rules") is None:
        return {"*"}
    return {r.strip().upper() for r in match.group("rules").split(",") if r.strip()}


def is_suppressed(rule: str, line_text: str) -> bool:
    rules = suppressed_rules(line_text)
    if rules is None:
        return False
    return "*" in rules or any(rule.startswith(r) for r in rules)
