"""The one table of checks. Adding a check means adding a row here and a rule file in rules/.

Entries are "module:function" strings imported only when the check runs, so listing rules
never imports torch, and there is no registry filled as a side effect of imports.
A check function has the signature ``run(subject, options) -> Iterable[Finding]``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Iterable

from evalguard.subject import MODEL_KINDS, ONNX_KINDS, SOURCE_KINDS


@dataclass(frozen=True)
class CheckSpec:
    name: str
    rules: tuple[str, ...]
    kinds: frozenset[str]
    entry: str
    #: name of a boolean AuditOptions field that must be true for this check to run (e.g. --no-onnx)
    enabled_by: str | None = None

    def enabled(self, options) -> bool:
        return self.enabled_by is None or bool(getattr(options, self.enabled_by))

    def load(self) -> Callable[..., Iterable]:
        module_name, _, func_name = self.entry.partition(":")
        return getattr(importlib.import_module(module_name), func_name)


CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("eval-mode", ("EG101", "EG102", "EG103", "EG104", "EG107"), MODEL_KINDS,
              "evalguard.checks.eval_mode.check:run"),
    CheckSpec("architecture", ("EG201", "EG202", "EG203", "EG204", "EG205", "EG206", "EG207"),
              MODEL_KINDS, "evalguard.checks.architecture.check:run"),
    CheckSpec("optimizer-state", ("EG301", "EG302"), MODEL_KINDS, "evalguard.checks.optimizer.check:run"),
    CheckSpec("source", ("EG105", "EG106", "EG201", "EG301", "EG903"), SOURCE_KINDS,
              "evalguard.checks.source.check:run"),
    CheckSpec("onnx-parity", ("EG401", "EG402", "EG403", "EG404", "EG405"), MODEL_KINDS | ONNX_KINDS,
              "evalguard.checks.onnx.check:run", enabled_by="onnx_enabled"),
)

#: Rules raised by the engine and the loader rather than by a check.
ENGINE_RULES = ("EG900", "EG901", "EG902", "EG904", "EG905")


def implemented_rules() -> frozenset[str]:
    rules = set(ENGINE_RULES)
    for spec in CHECKS:
        rules.update(spec.rules)
    return frozenset(rules)
