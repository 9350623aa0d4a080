"""The per-module mode table: which modules behave differently in train and eval (see
``mode_reasons``) and which of them are in training mode, for EG101 and the HTML report.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch

from evalguard.checks.eval_mode.mode_reasons import eager_reason, graph_training_ops, script_reason

#: Rows kept in ``subject.info["mode_table"]``; larger models keep the informative rows.
MODE_TABLE_CAP = 200


@dataclass(frozen=True)
class ModeRow:
    module: str
    type: str
    mode: str                  # "train" | "eval"
    behaviour_differs: bool
    reason: str = ""
    allowed: bool = False      # matched --allow-stochastic

    @property
    def offending(self) -> bool:
        return self.behaviour_differs and self.mode == "train"

    def as_dict(self) -> dict:
        return asdict(self)


def is_allowed(name: str, globs: Iterable[str]) -> bool:
    """A module is allowed when its name or any enclosing module's name matches a glob."""
    globs = tuple(globs)
    if not globs or not name:
        return False
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
    return any(fnmatch.fnmatchcase(prefix, glob) for prefix in prefixes for glob in globs)


def mode_fixed(model) -> bool:
    """torch.export's unlifted modules refuse train()/eval(): their mode is baked into the graph."""
    return isinstance(model, torch.fx.GraphModule) and "eval" in vars(model)


# --- the table ---------------------------------------------------------------------------------

def mode_rows(model, allow: Iterable[str] = ()) -> list[ModeRow]:
    """One row per module (plus graph ops for exported graphs), in ``named_modules`` order."""
    allow = tuple(allow)
    if mode_fixed(model):
        return [ModeRow(name, type_name, "train", True, reason, is_allowed(name, allow))
                for name, type_name, reason in graph_training_ops(model)]
    script = isinstance(model, torch.jit.ScriptModule)
    rows = []
    for name, module in model.named_modules():
        reason = script_reason(module) if script else eager_reason(module)
        rows.append(ModeRow(
            module=name, type=getattr(module, "original_name", None) or type(module).__name__,
            mode="train" if module.training else "eval", behaviour_differs=reason is not None,
            reason=reason or "", allowed=reason is not None and is_allowed(name, allow)))
    return rows


def capped_table(rows: list[ModeRow], cap: int = MODE_TABLE_CAP) -> tuple[list[dict], int]:
    """Rows for the report; over ``cap``, keep the root, behaviour-changing rows and mode changes."""
    if len(rows) <= cap:
        return [r.as_dict() for r in rows], 0
    modes = {r.module: r.mode for r in rows}

    def informative(row: ModeRow) -> bool:
        parent = row.module.rpartition(".")[0]
        return not row.module or row.behaviour_differs or modes.get(parent, row.mode) != row.mode

    kept = [r for r in rows if informative(r)][:cap]
    return [r.as_dict() for r in kept], len(rows) - len(kept)


def summary(rows: list[ModeRow], model) -> dict:
    return {
        "modules": len(rows),
        "in_training": sum(r.mode == "train" for r in rows),
        "behaviour_differs": sum(r.behaviour_differs for r in rows),
        "behaviour_differs_in_training": sum(r.offending for r in rows),
        "root_training": bool(getattr(model, "training", False)) and not mode_fixed(model),
        "mode_fixed": mode_fixed(model),
    }
