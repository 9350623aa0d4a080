"""In-source suppressions: ``# evalguard: ignore[EG301]``, ``# evalguard: ignore[adam-coupled-weight-decay]``
or a bare ``# evalguard: ignore``.

A comment suppresses a finding when it sits on any line of the statement the finding points
into, so a multi-line call can carry the comment on its first line, its last, or an argument's.
"""
from __future__ import annotations

import io
import re
import tokenize

_MARKER = re.compile(r"#\s*evalguard:\s*ignore(?:\[(?P<rules>[^\]]*)\])?", re.IGNORECASE)


def suppressed_rules(line: str) -> set[str] | None:
    """Rules suppressed by this line's comment: ids/prefixes (upper case) or rule names (lower
    case), ``{"*"}`` for all, None when there is no marker."""
    match = _MARKER.search(line)
    if not match:
        return None
    if match.group("rules") is None:
        return {"*"}
    return {_normalise(r) for r in match.group("rules").split(",") if r.strip()}


def _normalise(token: str) -> str:
    token = token.strip()
    return token.lower() if "-" in token else token.upper()


def _rule_name(rule: str) -> str:
    from evalguard.catalogue import load_catalogue

    entry = load_catalogue().get(rule)
    return entry.name if entry is not None else ""


def is_suppressed(rule: str, line_text: str) -> bool:
    rules = suppressed_rules(line_text)
    if rules is None:
        return False
    return "*" in rules or any(rule.startswith(r) for r in rules) or _rule_name(rule) in rules


def statement_spans(text: str) -> dict[int, tuple[int, int]]:
    """1-based line -> (first, last) line of the logical line (statement) it belongs to.

    Lines of a one-line statement are left out; a file that does not tokenize gives {}.
    """
    spans: dict[int, tuple[int, int]] = {}
    start = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT) and start is None:
                continue
            if start is None:
                start = token.start[0]
            if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                end = token.start[0]
                if end > start:
                    spans.update({line: (start, end) for line in range(start, end + 1)})
                start = None
    except (tokenize.TokenError, SyntaxError):
        return spans
    return spans


class Suppressions:
    """The suppression comments of one source file."""

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self._spans: dict[int, tuple[int, int]] | None = None
        self._text = text

    def suppresses(self, rule: str, line: int) -> bool:
        if not 0 < line <= len(self.lines):
            return False
        if "evalguard" not in self._text:
            return False
        if self._spans is None:
            self._spans = statement_spans(self._text)
        first, last = self._spans.get(line, (line, line))
        return any(is_suppressed(rule, self.lines[n - 1]) for n in range(first, min(last, len(self.lines)) + 1))
