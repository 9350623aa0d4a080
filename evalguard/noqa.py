"""``--add-noqa``: write ``# evalguard: ignore[RULE]`` on the lines of today's source findings,
as ``ruff --add-noqa`` does, so a project adopts evalguard and fixes the rest over time.

A line that already carries an ``evalguard: ignore[...]`` comment gets the new rules added to
it. A line the comment cannot end (inside a multi-line string, or continued with a backslash)
is left alone and counted as skipped.
"""
from __future__ import annotations

import io
import re
import tokenize
from collections import defaultdict
from dataclasses import dataclass, field

from evalguard.findings import Finding

_MARKER = re.compile(r"#\s*evalguard:\s*ignore\[(?P<rules>[^\]]*)\]", re.IGNORECASE)


@dataclass
class NoqaEdit:
    path: str
    before: str
    after: str
    added: int = 0
    skipped: list[int] = field(default_factory=list)


def _comment_lines(text: str) -> set[int]:
    """1-based lines where a comment may end the line: a logical or physical line end outside strings."""
    ends = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT):
                ends.add(token.start[0])
    except (tokenize.TokenError, SyntaxError):
        pass
    return ends


def _with_rules(line: str, rules: list[str]) -> tuple[str, int]:
    """The line with its marker carrying ``rules`` (added to an existing marker), and how many were new."""
    body, newline = (line[:-1], "\n") if line.endswith("\n") else (line, "")
    match = _MARKER.search(body)
    if match:
        present = [r.strip() for r in match.group("rules").split(",") if r.strip()]
        new = [r for r in rules if r not in present]
        if not new:
            return line, 0
        marker = f"# evalguard: ignore[{', '.join(present + new)}]"
        return body[:match.start()] + marker + body[match.end():] + newline, len(new)
    if re.search(r"#\s*evalguard:\s*ignore(?!\[)", body):
        return line, 0                       # a bare ignore already suppresses everything
    return f"{body.rstrip()}  # evalguard: ignore[{', '.join(rules)}]{newline}", len(rules)


def add_noqa(path: str, text: str, findings: list[Finding]) -> NoqaEdit:
    by_line: dict[int, list[str]] = defaultdict(list)
    for finding in findings:
        if finding.location.line and finding.rule not in by_line[finding.location.line]:
            by_line[finding.location.line].append(finding.rule)
    lines = text.splitlines(keepends=True)
    safe = _comment_lines(text)
    edit = NoqaEdit(path, text, text)
    for number, rules in sorted(by_line.items()):
        line = lines[number - 1] if number <= len(lines) else None
        if line is None or number not in safe or line.rstrip("\n").endswith("\\"):
            edit.skipped.append(number)
            continue
        lines[number - 1], added = _with_rules(line, sorted(rules))
        edit.added += added
    edit.after = "".join(lines)
    return edit


def source_findings(findings) -> dict[str, list[Finding]]:
    """The findings ``--add-noqa`` can mark: those on a line of a Python source file."""
    grouped: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        if finding.location.line and finding.location.path.endswith(".py") and not finding.location.module:
            grouped[finding.location.path].append(finding)
    return dict(grouped)
