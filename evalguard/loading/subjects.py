"""Build the ``AuditSubject`` for a loaded model, state_dict or checkpoint."""
from __future__ import annotations

from pathlib import Path

from evalguard.errors import TargetError
from evalguard.subject import AuditOptions, AuditSubject


def subject_from_object(path: Path, obj, options: AuditOptions, info: dict) -> AuditSubject:
    """Turn what torch.load returned into a subject (building the architecture if needed)."""
    from evalguard.loading.checkpoint_layouts import interpret

    layout = interpret(obj, str(path))
    info = {**info, **layout.info}
    if layout.module is not None:
        return model_subject(path, layout.kind, layout.module, options, info,
                             optimizer_state=layout.optimizer_state, mode_source="file")
    if not options.model_factory and layout.optimizer_state is not None:
        return optimizer_only_subject(path, layout, info)
    model = architecture_for(path, options, what="a state_dict" if layout.kind == "state-dict"
                             else f"a {layout.kind} holding a state_dict")
    return state_dict_subject(path, layout.kind, model, layout.state_dict, options, info,
                              optimizer_state=layout.optimizer_state)


def optimizer_only_subject(path: Path, layout, info: dict) -> AuditSubject:
    """A training checkpoint without ``--model``: its optimizer state can still be judged
    (EG301/EG302 need no architecture); the engine skips the rules that need the model."""
    info = {**info, "model": "not loaded: no architecture given (--model); optimizer state only"}
    if path.is_file():
        info["file_size"] = path.stat().st_size
    return AuditSubject(path=str(path), kind=layout.kind, model=None, optimizer_state=layout.optimizer_state,
                        load=load_facts(info, default_format=layout.kind),
                        no_model_reason="no architecture to load the weights into: pass --model MODULE:CALLABLE "
                                        "to check the model")


def architecture_for(path: Path, options: AuditOptions, what: str):
    if not options.model_factory:
        raise TargetError(f"{path} is {what}; pass --model MODULE:CALLABLE to give its architecture")
    from evalguard.loading.factory import build_model

    return build_model(options.model_factory)


def state_dict_subject(path: Path, kind: str, model, state_dict, options: AuditOptions, info: dict,
                       optimizer_state=None, spec: str | None = None,
                       mode_source: str = "--model factory") -> AuditSubject:
    from evalguard.loading.checkpoint_layouts import apply_state_dict

    spec = spec or f"--model {options.model_factory}"
    info = {**info, **apply_state_dict(model, state_dict, path=str(path), spec=spec)}
    return model_subject(path, kind, model, options, info, optimizer_state=optimizer_state,
                         mode_source=mode_source)


def model_subject(path: Path, kind: str, model, options: AuditOptions, info: dict, *,
                  optimizer_state=None, mode_source: str, inputs_resolver=None) -> AuditSubject:
    from evalguard.loading import default_inputs_resolver

    info = dict(info)
    info.setdefault("saved_training", bool(getattr(model, "training", False)))
    info["mode_source"] = mode_source
    info["model_class"] = f"{type(model).__module__}.{type(model).__qualname__}"
    info.update(model_size(model))
    if path.is_file():
        info["file_size"] = path.stat().st_size
    return AuditSubject(path=str(path), kind=kind, model=model, optimizer_state=optimizer_state,
                        load=load_facts(info, default_format=kind),
                        inputs_resolver=inputs_resolver or default_inputs_resolver(options, model, str(path)))


def model_size(model) -> dict:
    """Parameter count and in-memory bytes (parameters and buffers) for the report's model summary."""
    import torch.nn as nn

    if not isinstance(model, nn.Module):
        return {}
    params = list(model.parameters())
    tensors = params + list(model.buffers())
    return {"parameters": sum(p.numel() for p in params),
            "parameter_bytes": sum(t.numel() * t.element_size() for t in tensors)}


#: Loader keys that ``load_facts`` maps to typed fields; any other key becomes a ``details`` line.
_WEIGHT_KEYS = {"architecture": "architecture", "loaded_keys": "loaded", "missing_keys": "missing",
                "missing_key_count": "missing_count", "unexpected_keys": "unexpected",
                "unexpected_key_count": "unexpected_count", "stripped_prefix": "stripped_prefix",
                "expected_keys": "expected", "renamed_keys": "renamed"}
_TOP_KEYS = ("format", "model_class", "saved_training", "mode_source", "file_size", "parameters",
             "parameter_bytes")
_OPTIMIZER_KEYS = {"optimizer_state": "location", "optimizer": "name", "optimizer_source": "name_source",
                   "optimizer_count": "count"}
_LABELS = {"state_dict": "State dict", "model": "Model", "weights": "Weight files", "epoch": "Epoch",
           "global_step": "Global step", "step": "Step", "iteration": "Iteration",
           "user_inputs": "Program inputs", "training_ops": "Training-mode ops in the graph",
           "load_warnings": "Load warnings", "ir_version": "ONNX IR version", "opset": "Opsets",
           "producer": "Producer", "graph_inputs": "Graph inputs"}


def load_facts(info: dict, default_format: str = ""):
    """The loader's findings about a file as typed ``LoadFacts`` (the one place loaders'
    working notes become report facts)."""
    from evalguard.facts import LoadFacts, OptimizerHint, WeightsFacts

    weights = None
    if any(key in info for key in _WEIGHT_KEYS):
        values = {field: info[key] for key, field in _WEIGHT_KEYS.items() if key in info}
        for field in ("missing", "unexpected"):
            values[field] = tuple(values.get(field, ()))
        values.setdefault("missing_count", len(values["missing"]))
        values.setdefault("unexpected_count", len(values["unexpected"]))
        values.setdefault("expected", values.get("loaded", 0) + values["missing_count"])
        weights = WeightsFacts(**values)
    optimizer = None
    if "optimizer_state" in info:
        optimizer = OptimizerHint(**{field: info[key] for key, field in _OPTIMIZER_KEYS.items() if key in info})
    known = set(_WEIGHT_KEYS) | set(_TOP_KEYS) | set(_OPTIMIZER_KEYS)
    details = tuple((_LABELS.get(key, key.replace("_", " ").capitalize()), _text(value))
                    for key, value in info.items() if key not in known)
    return LoadFacts(format=str(info.get("format") or default_format), model_class=info.get("model_class"),
                     saved_training=info.get("saved_training"), mode_source=info.get("mode_source"),
                     file_size=info.get("file_size"), parameters=info.get("parameters"),
                     parameter_bytes=info.get("parameter_bytes"), weights=weights, optimizer=optimizer,
                     details=details)


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)
