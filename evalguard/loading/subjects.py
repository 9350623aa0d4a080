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
    model = architecture_for(path, options, what="a state_dict" if layout.kind == "state-dict"
                             else f"a {layout.kind} holding a state_dict")
    return state_dict_subject(path, layout.kind, model, layout.state_dict, options, info,
                              optimizer_state=layout.optimizer_state)


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
    info["saved_training"] = bool(getattr(model, "training", False))
    info["mode_source"] = mode_source
    info["model_class"] = f"{type(model).__module__}.{type(model).__qualname__}"
    if path.is_file():
        info["file_size"] = path.stat().st_size
    return AuditSubject(path=str(path), kind=kind, model=model, optimizer_state=optimizer_state, info=info,
                        inputs_resolver=inputs_resolver or default_inputs_resolver(options, model, str(path)))
