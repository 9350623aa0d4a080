"""Reading torch optimizer state_dicts: which optimizer wrote a param group, and is its decay coupled.

A state_dict holds no class name, so the optimizer is recognised from the keys torch puts in
each param group (and in the per-parameter state). Since torch 2.7 Adam and AdamW both write
``decoupled_weight_decay`` (False / True); NAdam and RAdam have written it for longer. Before
that, an Adam group and an AdamW group carry exactly the same keys and the same state, so they
cannot be told apart without a hint from outside the state_dict.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Keys every torch optimizer in a family may write; LR schedulers add initial_lr, and
# named_parameters() adds param_names. A group with other keys is some other optimizer.
_COMMON = {"params", "param_names", "lr", "initial_lr", "foreach", "maximize", "capturable",
           "differentiable", "fused", "weight_decay"}
ADAM_KEYS = _COMMON | {"betas", "eps", "amsgrad", "decoupled_weight_decay"}
NADAM_KEYS = _COMMON | {"betas", "eps", "momentum_decay", "decoupled_weight_decay"}
RADAM_ADAMAX_KEYS = _COMMON | {"betas", "eps", "decoupled_weight_decay"}

#: Where a checkpoint may name its optimizer class: string entries next to ``state`` and
#: ``param_groups`` (some trainers add them), or the loader's ``OptimizerHint`` (a name found
#: in the checkpoint beside the state, with ``name_source`` saying so).
STATE_HINT_KEYS = ("optimizer_class", "optimizer_name", "optimizer_type", "optimizer", "optim",
                   "_target_", "class", "name", "type")


@dataclass(frozen=True)
class GroupKind:
    """What we could tell about one param group."""

    family: str | None          # "Adam", "AdamW", "NAdam", "RAdam", "Adamax", ... or None
    decoupled: bool | None      # None: cannot tell
    basis: str                  # why we believe it, for the evidence
    confidence: str             # "high" | "medium" | "none"


def optimizer_states(raw: Any) -> list[Mapping[str, Any]]:
    """One or several state_dicts (Lightning keeps a list), skipping anything malformed."""
    if isinstance(raw, Mapping):
        candidates: Iterable = [raw]
    elif isinstance(raw, (list, tuple)):
        candidates = raw
    else:
        return []
    return [s for s in candidates
            if isinstance(s, Mapping) and isinstance(s.get("param_groups"), (list, tuple))]


def state_keys(state: Mapping[str, Any], group: Mapping[str, Any]) -> set[str]:
    """Union of the per-parameter state keys of this group's parameters."""
    per_param = state.get("state") or {}
    keys: set[str] = set()
    for pid in group.get("params", ()):
        entry = per_param.get(pid)
        if isinstance(entry, Mapping):
            keys.update(entry)
    return keys


def weight_decay(group: Mapping[str, Any]) -> float:
    try:
        return float(group.get("weight_decay", 0) or 0)
    except (TypeError, ValueError):
        return 0.0


def hint_from(state: Mapping[str, Any], loaded=None) -> str | None:
    """A class name stored next to the state (by a training framework), or named in the
    checkpoint as the loader found it (``evalguard.facts.OptimizerHint``), if any."""
    for key in STATE_HINT_KEYS:
        value = state.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    if loaded is not None and loaded.name_source != "inferred from param_groups" and (loaded.name or "").strip():
        return loaded.name.strip()
    return None


def family_from_hint(hint: str) -> tuple[str | None, bool | None]:
    """Map a class name such as ``torch.optim.Adam`` or ``adamw_torch`` to (family, decoupled)."""
    last = hint.replace("/", ".").split(".")[-1].lower()
    if "adamw" in last:
        return "AdamW", True
    if "fused" in last or "lamb" in last:
        return None, None          # apex/DeepSpeed FusedAdam default to AdamW mode: unknown
    for family in ("nadam", "radam", "adamax"):
        if last.startswith(family):
            return {"nadam": "NAdam", "radam": "RAdam", "adamax": "Adamax"}[family], False
    if last.startswith("adam"):    # Adam, adam, Adam8bit, adam_torch
        return "Adam", False
    return None, None


def _torch_family(group: Mapping[str, Any], decoupled: bool) -> str:
    if "momentum_decay" in group:
        return "NAdam"
    if "amsgrad" in group:
        return "AdamW" if decoupled else "Adam"
    return "RAdam"


def classify_group(group: Mapping[str, Any], keys: set[str], hint: str | None) -> GroupKind:
    names = set(group)
    if "decoupled_weight_decay" in group:
        decoupled = bool(group["decoupled_weight_decay"])
        return GroupKind(_torch_family(group, decoupled), decoupled,
                         f"param group records decoupled_weight_decay={decoupled}", "high")
    if "correct_bias" in group:    # the deprecated transformers.AdamW: always decoupled
        return GroupKind("transformers.AdamW", True, "param group has correct_bias (transformers.AdamW)", "high")
    if "betas" not in group or "eps" not in group:
        return GroupKind(None, None, "not an Adam-family param group", "none")
    if names <= NADAM_KEYS and ("momentum_decay" in group or "mu_product" in keys):
        return GroupKind("NAdam", False, "NAdam state without decoupled_weight_decay: "
                         "written by a torch NAdam that only had coupled weight decay", "high")
    if names <= RADAM_ADAMAX_KEYS and "amsgrad" not in group:
        # Adamax's exp_inf is unmistakable; the rest is recognised by the keys it lacks.
        family = "Adamax" if "exp_inf" in keys else "RAdam" if "exp_avg_sq" in keys else "RAdam or Adamax"
        return GroupKind(family, False, f"{family} state without decoupled_weight_decay: "
                         "that optimizer only had coupled weight decay",
                         "high" if family == "Adamax" else "medium")
    if names <= ADAM_KEYS:
        if hint:
            family, decoupled = family_from_hint(hint)
            if decoupled is not None:
                return GroupKind(family, decoupled, f"checkpoint names the optimizer {hint!r}; the "
                                 "param group itself (torch < 2.7) cannot tell Adam from AdamW", "medium")
        return GroupKind("Adam or AdamW", None, "written by torch < 2.7: Adam and AdamW state_dicts "
                         "are identical (no decoupled_weight_decay key) and no class name was stored",
                         "none")
    return GroupKind(None, None, "unrecognised optimizer param group", "none")
