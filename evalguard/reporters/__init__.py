"""Renderers: one Report, several formats. Each entry is imported only when used."""
from __future__ import annotations

import importlib

#: format name -> "module:function"; each function is render(report, *, color=False) -> str
FORMATS = {
    "text": "evalguard.reporters.text:render",
    "json": "evalguard.reporters.json_report:render",
    "sarif": "evalguard.reporters.sarif:render",
    "junit": "evalguard.reporters.junit:render",
    "html": "evalguard.reporters.html:render",
    "github": "evalguard.reporters.github:render",
    "gitlab": "evalguard.reporters.gitlab:render",
}


def render(report, fmt: str, *, color: bool = False) -> str:
    module_name, _, func = FORMATS[fmt].partition(":")
    return getattr(importlib.import_module(module_name), func)(report, color=color)
