"""How a check family declares itself: the rules it owns, the target kinds it handles and
the function that runs it (imported only when it runs, so listing rules never imports torch).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CheckSpec:
    name: str
    rules: tuple[str, ...]
    kinds: frozenset[str]
    entry: str                               # "module:function"; run(subject, options) -> CheckOutcome
    #: a boolean AuditOptions field that must be true for this check to run (e.g. --no-onnx)
    enabled_by: str | None = None
    #: the reason reported for every rule of this check when ``enabled_by`` is false
    disabled_reason: str = ""
    #: False for checks that judge a model kind without its module (optimizer state in a
    #: checkpoint loaded without --model); the others are skipped there, with the reason
    needs_model: bool = True

    def enabled(self, options) -> bool:
        return self.enabled_by is None or bool(getattr(options, self.enabled_by))

    def load(self) -> Callable:
        module_name, _, func_name = self.entry.partition(":")
        return getattr(importlib.import_module(module_name), func_name)
