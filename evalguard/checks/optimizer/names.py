"""Which parameter is which in an optimizer state_dict, and which ones are biases or norm weights.

A state_dict refers to parameters by integer ids, numbered group after group. Names come from
(in order of trust): ``param_names`` (torch >= 2.6 writes them when the optimizer was built from
``named_parameters()``), the order of the model's parameters (an assumption, checked against the
shapes of the per-parameter state where there is state), or nothing (only shapes are known).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# State entries that have the parameter's own shape (Adam family, SGD momentum, RMSprop, Adagrad).
SHAPED_STATE_KEYS = ("exp_avg", "exp_avg_sq", "momentum_buffer", "square_avg", "sum", "exp_inf", "acc_delta")
_NORM_COMPONENT = re.compile(r"^(ln|bn|gn)(_.*|\d*)$", re.IGNORECASE)


@dataclass(frozen=True)
class NameMap:
    names: dict[Any, str] | None   # param id -> parameter name; None when unknown
    source: str                    # "param_names", "model order", "none"
    note: str                      # the assumption made, for the evidence
    confidence: str                # "high", "medium", "low"


def group_ids(state: Mapping[str, Any]) -> list:
    return [pid for group in state["param_groups"] for pid in group.get("params", ())]


def state_shape(state: Mapping[str, Any], pid) -> tuple[int, ...] | None:
    entry = (state.get("state") or {}).get(pid)
    if not isinstance(entry, Mapping):
        return None
    for key in SHAPED_STATE_KEYS:
        shape = getattr(entry.get(key), "shape", None)
        if shape is not None:
            return tuple(shape)
    return None


def _from_param_names(state) -> NameMap | None:
    names: dict[Any, str] = {}
    for group in state["param_groups"]:
        group_names = group.get("param_names")
        params = group.get("params", ())
        if not isinstance(group_names, (list, tuple)) or len(group_names) != len(params):
            return None
        names.update(zip(params, group_names))
    return NameMap(names, "param_names", "names recorded by the optimizer (param_names)", "high")


def _from_model_order(state, model) -> NameMap | None:
    ids = group_ids(state)
    shapes = {pid: state_shape(state, pid) for pid in ids}
    multi_group = sum(1 for g in state["param_groups"] if g.get("params")) > 1
    all_params = list(model.named_parameters())
    candidates = (("parameters", all_params),
                  ("trainable parameters", [(n, p) for n, p in all_params if p.requires_grad]))
    for label, params in candidates:
        if len(params) != len(ids) or not ids:
            continue
        # Several groups are usually filtered views (decay / no-decay) of the model, not slices in
        # model order; only accept that mapping when every parameter's state shape confirms it.
        if multi_group and any(shapes[pid] is None for pid in ids):
            continue
        if all(shapes[pid] is None or shapes[pid] == tuple(p.shape) for pid, (_, p) in zip(ids, params)):
            checked = sum(1 for pid in ids if shapes[pid] is not None)
            note = (f"assumed the optimizer holds the model's {label} in named_parameters() order "
                    f"(count matches: {len(ids)}; shapes confirmed for {checked})")
            return NameMap({pid: name for pid, (name, _) in zip(ids, params)}, "model order", note,
                           "medium" if checked == len(ids) else "low")
    return None


def name_parameters(state: Mapping[str, Any], model=None) -> NameMap:
    found = _from_param_names(state)
    if found is None and model is not None and hasattr(model, "named_parameters"):
        found = _from_model_order(state, model)
    return found or NameMap(None, "none", "parameter names unknown (no param_names in the state and "
                            "no model whose parameters match it)", "low")


def _is_norm_module(module) -> bool:
    import torch.nn as nn

    norm_types = tuple(t for t in (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm,
                                   getattr(nn, "RMSNorm", None)) if t is not None)
    # Custom norms (LlamaRMSNorm, T5LayerNorm, FusedLayerNorm) are recognised by class name.
    return isinstance(module, norm_types) or "norm" in type(module).__name__.lower()


def module_index(model) -> tuple[set[str], set[str]] | None:
    """(all module names, names of normalisation modules) of the model, or None without one."""
    if model is None or not hasattr(model, "named_modules"):
        return None
    modules = dict(model.named_modules())
    return set(modules), {name for name, module in modules.items() if _is_norm_module(module)}


def param_role(name: str, index: tuple[set[str], set[str]] | None) -> str | None:
    """'norm' for a normalisation layer's parameter, 'bias' for another bias, else None.

    With the model, the owning module's type decides; without it (or for a name the model does
    not have) the name does: a path component containing "norm", or ln/bn/gn (ln_f, bn1, ln_1).
    """
    owner, _, leaf = name.rpartition(".")
    if index is not None and owner in index[0]:
        if owner in index[1]:
            return "norm"
    elif any("norm" in part.lower() or _NORM_COMPONENT.match(part) for part in name.split(".")[:-1]):
        return "norm"
    return "bias" if leaf.endswith("bias") else None
