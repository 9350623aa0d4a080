"""Architecture rules EG201-EG207: Dropout/BatchNorm layout, stale statistics, non-finite weights.

The structural rules (EG205-EG207) read the module tree and need no inputs. The dataflow
rules (EG201-EG204) read a graph of what the model computes: the torch.fx view when the
model traces, else one recorded eval-mode forward pass (needs example inputs). When neither
is possible the dataflow rules are skipped and ``subject.info["architecture"]`` says why;
the structural rules still run. Everything that runs or traces a model the user's code handed
over uses a deep copy; a model the audit loaded from a file is used in place, modes put back.
"""
from __future__ import annotations

import torch
from torch import nn

from evalguard.checks.architecture import flow as arch_flow
from evalguard.checks.architecture import static as arch_static
from evalguard.checks.architecture import dataflow
from evalguard.errors import TargetError
from evalguard.findings import Finding
from evalguard.subject import AuditOptions, AuditSubject

RULES = arch_flow.FLOW_RULES + arch_static.STATIC_RULES


def run(subject: AuditSubject, options: AuditOptions) -> list[Finding]:
    selected = frozenset(options.selected) & frozenset(RULES)
    if not selected:
        return []
    info: dict = {}
    subject.info["architecture"] = info
    model = _as_module(subject.model)
    if model is None:
        info["skipped"] = f"no nn.Module to inspect ({type(subject.model).__name__})"
        return []
    found = arch_static.findings(model, selected, subject.path, subject.kind)
    if selected & set(arch_flow.FLOW_RULES):
        flow = _dataflow(model, subject, options, info)
        if flow is not None:
            found.extend(arch_flow.findings(flow, selected, subject.path))
    return found


def _as_module(model) -> nn.Module | None:
    if isinstance(model, nn.Module):
        return model
    unlift = getattr(model, "module", None)   # torch.export.ExportedProgram
    if callable(unlift):
        candidate = unlift()
        if isinstance(candidate, nn.Module):
            return candidate
    return None


def _dataflow(model: nn.Module, subject: AuditSubject, options: AuditOptions, info: dict):
    """The fx view if the model traces, else the forward-hook view; None (with a note) if neither."""
    notes = info.setdefault("dataflow_notes", [])

    if isinstance(model, torch.jit.ScriptModule):
        info["dataflow"] = "unavailable"
        notes.append("TorchScript module: EG201-EG204 need an nn.Module (pass --model to rebuild it)")
        return None
    # EG204 needs shapes; the other dataflow rules read the fx graph without running anything.
    wants_shapes = options.wants("EG204")
    try:
        with dataflow.eval_model(model, subject.owns_model) as view:
            flow = dataflow.from_fx(view, _inputs_or_none(subject, notes) if wants_shapes else None)
        info["dataflow"] = "fx"
        return flow
    except dataflow.DataflowUnavailable as exc:
        notes.append(str(exc))
    inputs = _inputs_or_none(subject, notes)
    if inputs is None:
        info["dataflow"] = "unavailable"
        notes.append("EG201-EG204 skipped: the model does not trace and no example inputs are available")
        return None
    try:
        with dataflow.eval_model(model, subject.owns_model) as view:
            flow = dataflow.from_hooks(view, inputs)
    except dataflow.DataflowUnavailable as exc:
        info["dataflow"] = "unavailable"
        notes.append(f"EG201-EG204 skipped: {exc}")
        return None
    info["dataflow"] = "hooks"
    return flow


def _inputs_or_none(subject: AuditSubject, notes: list):
    try:
        return subject.inputs
    except TargetError as exc:
        notes.append(f"no example inputs: {exc}")
        return None
