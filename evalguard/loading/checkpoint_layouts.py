"""Make sense of what a checkpoint file held, and load state_dicts into an architecture.

Layouts recognised: a full ``nn.Module``; a bare state_dict; checkpoint dicts with the model
under ``model``/``state_dict``/``model_state_dict``/``net``... and the optimizer under
``optimizer``/``optimizer_state_dict``...; PyTorch Lightning checkpoints (``state_dict``,
``optimizer_states``). Keys with a wrapper prefix (Lightning's ``model.``, DDP's ``module.``,
torch.compile's ``_orig_mod.``) are matched by stripping the prefix.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from evalguard.errors import TargetError

MODEL_KEYS = ("model", "state_dict", "model_state_dict", "net", "network", "module", "model_state",
              "weights")
OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optimizer_state", "optim", "opt")
OPTIMIZER_NAME_KEYS = ("optimizer_name", "optimizer_class", "optimizer_type")
_KEYS_SHOWN = 50


@dataclass
class Layout:
    kind: str
    module: Any = None                   # an nn.Module stored in the file
    state_dict: Mapping | None = None
    optimizer_state: Mapping | None = None
    info: dict = field(default_factory=dict)


def is_tensor(value) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def is_state_dict(obj) -> bool:
    """A non-empty str -> tensor mapping (``*_extra_state`` entries may hold anything)."""
    if not isinstance(obj, Mapping) or not obj:
        return False
    if not all(isinstance(k, str) for k in obj):
        return False
    return any(is_tensor(v) for v in obj.values()) and all(
        is_tensor(v) or k.endswith("_extra_state") or _quantized_entry(k, v) for k, v in obj.items())


#: torch.ao's quantized modules save their packed weights under these key endings: the packed
#: (weight, bias) tuple of tensors, and its dtype (e.g. ``0._packed_params._packed_params``).
PACKED_PARAMS = ("._packed_params._packed_params", "._packed_params.dtype")


def _quantized_entry(key: str, value) -> bool:
    """A quantized module's packed-parameter entry (``quantize_dynamic`` and static quantization)."""
    import torch

    if key.endswith(PACKED_PARAMS[1]):
        return isinstance(value, torch.dtype)
    if key.endswith(PACKED_PARAMS[0]) or key.endswith("._packed_params"):
        return isinstance(value, (tuple, list)) and all(is_tensor(v) or v is None for v in value)
    return False


def is_quantized_state_dict(state_dict: Mapping) -> bool:
    return any(isinstance(k, str) and k.endswith(PACKED_PARAMS) for k in state_dict)


def is_optimizer_state(obj) -> bool:
    return isinstance(obj, Mapping) and "param_groups" in obj and "state" in obj


def guess_optimizer_class(state: Mapping) -> str | None:
    """Only the unambiguous cases (torch >= 2.x param_group keys)."""
    groups = state.get("param_groups") or []
    keys = set(groups[0]) if groups and isinstance(groups[0], Mapping) else set()
    if {"betas", "amsgrad"} <= keys:
        if "decoupled_weight_decay" in keys:
            return "AdamW" if groups[0]["decoupled_weight_decay"] else "Adam"
        return None
    if {"momentum", "dampening", "nesterov"} <= keys:
        return "SGD"
    return None


def describe_optimizer(state: Mapping, info: dict, where: str, name: str | None = None) -> None:
    info["optimizer_state"] = where
    guessed = name or guess_optimizer_class(state)
    if guessed:
        info["optimizer"] = guessed
        info["optimizer_source"] = "named in the checkpoint" if name else "inferred from param_groups"


def interpret(obj, path: str) -> Layout:
    """Classify the loaded object; ``TargetError`` when it holds no model at all."""
    from torch import nn

    if isinstance(obj, nn.Module):
        return Layout("full-module-pickle", module=obj)
    if is_state_dict(obj):
        return Layout("state-dict", state_dict=obj, info={"state_dict": "top level"})
    if isinstance(obj, Mapping):
        if is_optimizer_state(obj):
            raise TargetError(f"{path}: holds an optimizer state_dict, not a model")
        if _is_lightning(obj):
            return _lightning(obj, path)
        return _checkpoint(obj, path)
    if is_tensor(obj):
        raise TargetError(f"{path}: holds a single tensor, not a model, state_dict or checkpoint")
    name = type(obj).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    raise TargetError(f"{path}: holds {article} {name}, not a model, state_dict or checkpoint")


def _is_lightning(obj: Mapping) -> bool:
    return "pytorch-lightning_version" in obj or (
        "state_dict" in obj and any(k in obj for k in ("optimizer_states", "lr_schedulers", "loops")))


def _lightning(obj: Mapping, path: str) -> Layout:
    state = obj.get("state_dict")
    if not is_state_dict(state):
        raise TargetError(f"{path}: Lightning checkpoint without a usable 'state_dict'")
    layout = Layout("lightning-checkpoint", state_dict=state,
                    info={"state_dict": "checkpoint['state_dict']",
                          **_scalars(obj, ("epoch", "global_step", "pytorch-lightning_version"))})
    optimizers = [o for o in obj.get("optimizer_states") or [] if is_optimizer_state(o)]
    if optimizers:
        layout.optimizer_state = optimizers[0]
        describe_optimizer(optimizers[0], layout.info, "checkpoint['optimizer_states'][0]")
        if len(optimizers) > 1:
            layout.info["optimizer_count"] = len(optimizers)
    return layout


def _checkpoint(obj: Mapping, path: str) -> Layout:
    from torch import nn

    layout = Layout("checkpoint", info=_scalars(obj, ("epoch", "global_step", "step", "iteration")))
    candidates = [k for k in MODEL_KEYS if k in obj] + [k for k in obj if k not in MODEL_KEYS]
    for key in candidates:
        value = obj[key]
        if isinstance(value, nn.Module):
            layout.module, layout.info["model"] = value, f"checkpoint[{key!r}] (full module)"
            break
        if is_state_dict(value):
            layout.state_dict, layout.info["state_dict"] = value, f"checkpoint[{key!r}]"
            break
    else:
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise TargetError(f"{path}: a dict with no model or state_dict inside (keys: {keys or 'none'})")
    name = next((obj[k] for k in OPTIMIZER_NAME_KEYS if isinstance(obj.get(k), str)), None)
    for key in OPTIMIZER_KEYS:
        if is_optimizer_state(obj.get(key)):
            layout.optimizer_state = obj[key]
            describe_optimizer(obj[key], layout.info, f"checkpoint[{key!r}]", name)
            break
    return layout


def _scalars(obj: Mapping, keys) -> dict:
    return {k: obj[k] for k in keys if isinstance(obj.get(k), (int, float, str)) and not isinstance(obj.get(k), bool)}


def apply_state_dict(model, state_dict: Mapping, *, path: str, spec: str) -> dict:
    """Load ``state_dict`` into ``model`` (non-strict) and return what to record in ``info``.

    No key matching at all, or a shape mismatch, is a ``TargetError``; missing/unexpected
    keys are kept in the returned info (and a warning line), because a partly-loaded model
    is still worth auditing for its layout and mode.
    """
    from evalguard.loading.hf_folder import is_transformers_model

    target = model.state_dict()
    renamed, prefix = _match_keys(state_dict, target)
    renamed = _with_metadata(renamed, state_dict, prefix)
    if is_transformers_model(model):
        info = _apply_with_transformers(model, renamed, path=path, spec=spec)
        if info is not None:
            return {**info, **({"stripped_prefix": prefix} if prefix else {})}
    matched = [k for k in renamed if k in target]
    if not matched:
        example = next(iter(state_dict), "?")
        expected = next(iter(target), "?")
        raise TargetError(f"{path}: none of the {len(state_dict)} keys in the state_dict match the model from "
                          f"{spec} (checkpoint has {example!r}, model expects {expected!r})")
    mismatched = [(k, tuple(renamed[k].shape), tuple(target[k].shape)) for k in matched
                  if is_tensor(renamed[k]) and tuple(renamed[k].shape) != tuple(target[k].shape)]
    if mismatched:
        shown = "; ".join(f"{k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in mismatched[:3])
        raise TargetError(f"{path}: {len(mismatched)} tensor shape(s) differ from the model from {spec}: {shown}")
    assign = _can_assign(model, renamed, target)
    result = model.load_state_dict(renamed, strict=False, assign=assign)
    missing = _untied(model, result.missing_keys, set(matched))
    info: dict[str, Any] = {"loaded_keys": len(matched), "expected_keys": len(target), "architecture": spec}
    if prefix:
        info["stripped_prefix"] = prefix
    info.update(key_report(missing, result.unexpected_keys))
    return info


def _apply_with_transformers(model, state_dict: Mapping, *, path: str, spec: str) -> dict | None:
    """A transformers model from --model takes its weights the way ``from_pretrained`` gives them
    (the architecture's key renames, weight tying): a twin is loaded by transformers, then its
    tensors are copied into the user's model, which keeps its identity and mode. None (plain
    matching instead) when the user's model no longer has the keys of its class."""
    from evalguard.loading.hf_folder import transformers_load

    name = type(model).__name__
    twin, missing, unexpected, renamed = transformers_load(type(model), model.config, state_dict, path, name)
    loaded = twin.state_dict()
    if set(loaded) != set(model.state_dict()):
        return None
    model.load_state_dict(loaded, strict=True)
    expected = len(loaded)
    info: dict[str, Any] = {"loaded_keys": expected - len(missing), "expected_keys": expected, "architecture": spec}
    if renamed:
        info["renamed_keys"] = renamed
    info.update(key_report(missing, unexpected))
    return info


def key_report(missing, unexpected) -> dict:
    """The info lines about missing and unexpected keys (first names, exact counts, a warning)."""
    info: dict[str, Any] = {}
    warnings = []
    notes = {"missing": "missing from the checkpoint (left at the architecture's initial values)",
             "unexpected": "in the checkpoint but not in the model (ignored)"}
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            info[f"{label}_keys"] = sorted(keys)[:_KEYS_SHOWN]
            info[f"{label}_key_count"] = len(keys)
            shown = ", ".join(sorted(keys)[:5]) + (" ..." if len(keys) > 5 else "")
            warnings.append(f"{len(keys)} key(s) {notes[label]}: {shown}")
    if warnings:
        info["load_warnings"] = warnings
    return info


def _untied(model, missing, loaded: set) -> list[str]:
    """Missing keys that share their tensor with a loaded one (tied weights) are not missing."""
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    loaded_ids = {id(tensors[k]) for k in loaded if k in tensors}
    return [k for k in missing if id(tensors.get(k)) not in loaded_ids]


def _with_metadata(renamed: dict, state_dict: Mapping, prefix: str):
    """``renamed`` with the state_dict's per-module versions (``_metadata``), re-keyed by ``prefix``.
    Modules read their version when loading: torch.ao's quantized Linear without it takes the
    legacy layout and looks for a ``weight`` key that its packed-params state_dict lacks."""
    from collections import OrderedDict

    metadata = getattr(state_dict, "_metadata", None)
    if not isinstance(metadata, Mapping):
        return renamed
    out = OrderedDict(renamed)
    stem = prefix[:-1] if prefix.endswith(".") else prefix
    out._metadata = OrderedDict(
        (key if not stem else ("" if key == stem else key[len(prefix):]), value)
        for key, value in metadata.items() if not stem or key == stem or key.startswith(prefix))
    return out


def _match_keys(state_dict: Mapping, target: Mapping) -> tuple[dict, str]:
    """Strip the wrapper prefix that makes the most keys match (``""`` when none helps)."""
    best, best_prefix = dict(state_dict), ""
    best_score = sum(k in target for k in state_dict)
    if best_score == len(target):
        return best, ""
    prefixes = set()
    for key in state_dict:
        parts = key.split(".")
        for depth in (1, 2):
            if len(parts) > depth:
                prefixes.add(".".join(parts[:depth]) + ".")
    for prefix in sorted(prefixes):
        stripped = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        score = sum(k in target for k in stripped)
        if score > best_score:
            best, best_prefix, best_score = stripped, prefix, score
    if best_prefix:
        # Keys outside the prefix (e.g. a Lightning module's loss weights) stay unexpected.
        best.update({k: v for k, v in state_dict.items() if not k.startswith(best_prefix) and k not in best})
    return best, best_prefix


def _can_assign(model, state_dict: Mapping, target: Mapping) -> bool:
    """Adopt the checkpoint's (memory-mapped) tensors instead of copying, when that is exact.

    Copying is needed when parameters are shared (tied embeddings: assigning would untie
    them) or when a dtype/device differs (assign would change the model's dtype).
    """
    tensors = [t for _, t in model.named_parameters(remove_duplicate=False)]
    tensors += [t for _, t in model.named_buffers(remove_duplicate=False)]
    if len({id(t) for t in tensors}) != len(tensors):
        return False
    for key, value in state_dict.items():
        if key in target and is_tensor(value) and (
                value.dtype != target[key].dtype or value.device != target[key].device):
            return False
    return True
