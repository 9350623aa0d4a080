"""Render one rule of the catalogue for `evalguard explain` (ruff's layout)."""
from __future__ import annotations

import textwrap


def _section(title: str, body: str) -> list[str]:
    return [f"## {title}", "", body.strip(), ""] if body and body.strip() else []


def render_rule(rule) -> str:
    lines = [f"# {rule.id} {rule.name} ({rule.severity}, {rule.status})", "", rule.title, ""]
    lines += _section("What it does", rule.description or rule.summary)
    lines += _section("Why is this bad?", rule.why)
    bad, good = rule.examples.get("bad", ""), rule.examples.get("good", "")
    if bad:
        lines += ["## Example", "", textwrap.indent(bad.strip("\n"), "    "), ""]
    lines += _section("How to fix it", rule.fix)
    if good:
        lines += ["Use instead:", "", textwrap.indent(good.strip("\n"), "    "), ""]
    lines += _section("Known problems", rule.known_problems)
    if rule.references:
        lines += ["## References", ""] + [f"- {ref}" for ref in rule.references] + [""]
    return "\n".join(lines).rstrip() + "\n"
