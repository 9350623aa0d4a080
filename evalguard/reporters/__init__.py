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
    """The report in ``fmt``. A reporter that raises is evalguard's bug: one ``error:`` line naming
    the reporter as EG900 (exit 2), never a traceback and never a finding against a target."""
    module_name, _, func = FORMATS[fmt].partition(":")
    return guarded(f"{fmt} reporter", lambda: getattr(importlib.import_module(module_name), func)(report, color=color))


def guarded(step: str, produce):
    """The one boundary around a reporter: what it raises becomes ``ReporterError`` naming ``step``."""
    from evalguard.errors import ReporterError

    try:
        return produce()
    except Exception as exc:  # noqa: BLE001 - evalguard's own bug, whatever it is
        raise ReporterError(step, exc) from exc
