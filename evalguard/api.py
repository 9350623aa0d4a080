"""``evalguard.audit``: the same checks as the CLI, on a live ``nn.Module``."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from evalguard.errors import UsageError
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


def _strings(value, parameter: str) -> list[str]:
    """A list of selectors; a bare string is one selector (``select="EG1"``), as on the command line."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(item, str) for item in items):
        raise UsageError(f"audit({parameter}=...) takes rule ids, prefixes or names as strings")
    return items


def _selection(select, ignore) -> frozenset[str]:
    """The rules ``--select``/``--ignore`` would pick for the same values: ids, prefixes, names, ALL."""
    from evalguard.run_check import Selection, layered_selection

    try:
        return layered_selection(Selection(select=_strings(select, "select") or None,
                                           ignore=_strings(ignore, "ignore")))
    except UsageError as exc:
        raise UsageError(f"audit(select=/ignore=): {exc}") from None


def _severities(severity: Mapping[str, str]) -> dict[str, Severity]:
    """Rule ids or names -> level, exactly as ``[tool.evalguard.severity]`` takes them."""
    from evalguard.engine import parse_severities

    if not isinstance(severity, Mapping):
        raise UsageError("audit(severity=...) takes a mapping of rule id or name to info, warning or error")
    try:
        return parse_severities(severity)
    except ValueError as exc:
        raise UsageError(f"audit(severity=...) {exc}") from None


def audit(model, example_inputs, *, select: Iterable[str] | None = None, ignore: Iterable[str] | None = None,
          onnx: bool = False, onnx_file: str | None = None, optimizer=None,
          allow_stochastic: Iterable[str] = (), tolerances: Mapping[str, Any] | None = None,
          severity: Mapping[str, str] | None = None, device: str = "cpu", seed: int = 0,
          name: str | None = None) -> Report:
    """Audit ``model`` (never modified) with ``example_inputs``; returns a :class:`Report`.

    ``example_inputs`` is a tensor, a tuple (positional arguments) or a dict (keyword
    arguments). ``optimizer`` (a torch optimizer) enables the optimizer rules; ``onnx=True``
    exports the eval-mode model and checks ONNX Runtime parity. ``select``, ``ignore`` and
    ``severity`` take exactly what the command line and ``[tool.evalguard]`` take (rule ids,
    prefixes such as ``"EG2"``, rule names, ``"ALL"``); anything else raises
    :class:`evalguard.errors.UsageError` naming it.
    """
    import torch.nn as nn

    from evalguard.engine import audit_subject, run_metadata
    from evalguard.facts import LoadFacts, OptimizerHint
    from evalguard.loading.subjects import model_size
    from evalguard.subject import AuditOptions, AuditSubject

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    inputs = _as_inputs(example_inputs)
    options = AuditOptions(
        selected=_selection(select, ignore), seed=seed, device=device,
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
    overrides = _severities(severity or {})
    result, findings = audit_subject(subject, options, overrides)
    return Report(targets=(result,), findings=tuple(findings), metadata=run_metadata(options))
