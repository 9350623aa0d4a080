"""Save and put back the train/eval flags of a module tree.

Checks that run a model in place (one the audit loaded itself) switch its mode; these put
every module's flag back, so later checks see the model as it was loaded.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator


def mode_flags(model) -> dict[str, bool]:
    return {name: module.training for name, module in model.named_modules()}


def restore_mode_flags(model, flags: dict[str, bool]) -> None:
    if getattr(model, "evalguard_switchable", False):   # an exported graph: its ops carry the mode
        model.train(flags.get("", True))
    for name, module in model.named_modules():
        if name in flags:
            module.training = flags[name]


@contextlib.contextmanager
def in_eval_mode(model) -> Iterator:
    """``model`` itself in eval mode; every module's flag is put back on exit."""
    flags = mode_flags(model)
    model.eval()
    try:
        yield model
    finally:
        restore_mode_flags(model, flags)
