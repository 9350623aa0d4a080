"""``evalguard.audit``: the same checks as the CLI, on a live ``nn.Module``."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from evalguard.findings import Report, Severity


def _as_inputs(example_inputs: Any):
    import torch

    from evalguard.subject import ExampleInputs

    if isinstance(example_inputs, ExampleInputs):
        return example_inputs
    if isinstance(example_inputs, torch.Tensor):
        return ExampleInputs(args=(example_inputs,), source="audit(example_inputs=tensor)")
    if isinstance(example_inputs, tuple):
        return ExampleInputs(args=example_inputs, source="audit(example_inputs=tuple)")
    if isinstance(example_inputs, list):
        return ExampleInputs(args=tuple(example_inputs), source="audit(example_inputs=list)")
    if isinstance(example_inputs, Mapping):
        return ExampleInputs(kwargs=dict(example_inputs), source="audit(example_inputs=dict)")
    raise TypeError("example_inputs must be a tensor, a tuple/list (positional) or a dict (keyword), "
                    f"not {type(example_inputs).__name__}")


def audit(model, example_inputs, *, select: Iterable[str] | None = None, ignore: Iterable[str] | None = None,
          onnx: bool = False, onnx_file: str | None = None, optimizer=None,
          allow_stochastic: Iterable[str] = (), tolerances: Mapping[str, Any] | None = None,
          severity: Mapping[str, str] | None = None, device: str = "cpu", seed: int = 0,
          name: str | None = None) -> Report:
    """Audit ``model`` (never modified) with ``example_inputs``; returns a :class:`Report`.

    ``example_inputs`` is a tensor, a tuple (positional arguments) or a dict (keyword
    arguments). ``optimizer`` (a torch optimizer) enables the optimizer rules; ``onnx=True``
    exports the eval-mode model and checks ONNX Runtime parity.
    """
    import torch.nn as nn

    from evalguard.engine import audit_subject, run_metadata
    from evalguard.facts import LoadFacts, OptimizerHint
    from evalguard.loading.subjects import model_size
    from evalguard.run_check import selected_rules
    from evalguard.subject import AuditOptions, AuditSubject

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    inputs = _as_inputs(example_inputs)
    options = AuditOptions(
        selected=selected_rules(list(select or []), list(ignore or [])), seed=seed, device=device,
        onnx_enabled=onnx or onnx_file is not None, onnx_file=onnx_file,
        allow_stochastic=tuple(allow_stochastic), tolerances=dict(tolerances or {}),
    )
    subject = AuditSubject(
        path=name or type(model).__name__, kind="live-module", model=model,
        optimizer_state=optimizer.state_dict() if optimizer is not None else None,
        load=LoadFacts(format="live nn.Module", model_class=f"{type(model).__module__}.{type(model).__qualname__}",
                       saved_training=model.training, mode_source="the model as passed to audit()",
                       **model_size(model),
                       optimizer=None if optimizer is None else OptimizerHint(
                           "audit(optimizer=...)", type(optimizer).__name__, "the optimizer object")),
        inputs_resolver=lambda: inputs,
    )
    overrides = {rule.upper(): Severity.parse(level) for rule, level in (severity or {}).items()}
    result, findings = audit_subject(subject, options, overrides)
    return Report(targets=(result,), findings=tuple(findings), metadata=run_metadata(options))
