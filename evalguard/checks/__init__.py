"""The check table, built from each family's declaration (``CHECK`` in the family package's
``__init__``): the one place that says which rules a family owns and which target kinds it
handles. A family package's ``__init__`` imports nothing heavy, so building this table (and
listing rules) never imports torch; a check's code is imported only when it runs.

Adding a rule: write ``rules/EGxxx.toml``, add the id to its family's ``CHECK.rules`` and emit
it from that family's code, and add ``examples/rules/EGxxx/{bad,good}``. The engine turns a
finding for a rule the check does not own into EG900, and a test keeps catalogue and owners
one-to-one.
"""
from __future__ import annotations

import importlib

from evalguard.checks.spec import CheckSpec

FAMILIES = ("eval_mode", "architecture", "weights", "optimizer", "source", "onnx", "generation")

CHECKS: tuple[CheckSpec, ...] = tuple(
    importlib.import_module(f"evalguard.checks.{family}").CHECK for family in FAMILIES)

#: Rules raised by the engine and the loader rather than by a check.
ENGINE_RULES = ("EG900", "EG901", "EG902", "EG904", "EG905")

#: Rules no selection, ignore, config or severity override can turn off or downgrade: evalguard's
#: own crash (EG900) and the refusals of an unsafe file.
ALWAYS_ON = frozenset(ENGINE_RULES)


def owners() -> dict[str, list[str]]:
    """rule id -> names of the checks (or "engine") that may emit it."""
    table: dict[str, list[str]] = {rule: ["engine"] for rule in ENGINE_RULES}
    for spec in CHECKS:
        for rule in spec.rules:
            table.setdefault(rule, []).append(spec.name)
    return table


def implemented_rules() -> frozenset[str]:
    return frozenset(owners())


__all__ = ["ALWAYS_ON", "CHECKS", "CheckSpec", "ENGINE_RULES", "FAMILIES", "implemented_rules", "owners"]
