"""Architecture rules EG201-EG207: Dropout/BatchNorm layout, stale statistics, non-finite weights.

The structural rules (EG205-EG207) read the module tree and need no inputs. The dataflow
rules (EG201-EG204) read a graph of what the model computes: the torch.fx view when the
model traces, else one recorded eval-mode forward pass (needs example inputs). When neither
is possible the dataflow rules are reported as skipped, with the reason; the structural rules
still run. Everything that runs or traces a model the user's code handed over uses a deep copy;
a model the audit loaded from a file is used in place, modes put back.
"""
from __future__ import annotations

import torch
from torch import nn

from evalguard.checks.architecture import CHECK, dataflow
from evalguard.checks.architecture import flow as arch_flow
from evalguard.checks.architecture import static as arch_static
from evalguard.errors import TargetError
from evalguard.facts import ArchitectureFacts
from evalguard.outcome import CheckOutcome, Outcome
from evalguard.subject import AuditOptions, AuditSubject

RULES = arch_flow.FLOW_RULES + arch_static.STATIC_RULES


def run(subject: AuditSubject, options: AuditOptions) -> CheckOutcome:
    out = Outcome(options, CHECK.rules)
    model = _as_module(subject.model)
    if model is None:
        out.skip(RULES, f"no nn.Module to inspect ({type(subject.model).__name__})")
        return out.done()
    selected = frozenset(options.selected) & frozenset(RULES)
    out.extend(arch_static.findings(model, selected, subject.path, subject.kind))
    out.ran(*arch_static.STATIC_RULES)
    notes: list[str] = []
    view = "not needed"
    if selected & set(arch_flow.FLOW_RULES):
        view, flow = _dataflow(model, subject, options, notes)
        if flow is None:
            out.skip(arch_flow.FLOW_RULES, notes[-1] if notes else "no dataflow view of the model")
        else:
            out.extend(arch_flow.findings(flow, selected, subject.path))
            out.ran(*arch_flow.FLOW_RULES)
    out.fact(ArchitectureFacts(dataflow=view, notes=tuple(notes)))
    return out.done()


def _as_module(model) -> nn.Module | None:
    if isinstance(model, nn.Module):
        return model
    unlift = getattr(model, "module", None)   # torch.export.ExportedProgram
    if callable(unlift):
        candidate = unlift()
        if isinstance(candidate, nn.Module):
            return candidate
    return None


def _dataflow(model: nn.Module, subject: AuditSubject, options: AuditOptions, notes: list):
    """(view name, flow): the fx view if the model traces, else the forward-hook view;
    ("unavailable", None) with the reason last in ``notes`` if neither."""
    if isinstance(model, torch.jit.ScriptModule):
        notes.append("TorchScript module: the dataflow rules need an nn.Module (pass --model to rebuild it)")
        return "unavailable", None
    # EG204 needs shapes; the other dataflow rules read the fx graph without running anything.
    wants_shapes = options.wants("EG204")
    try:
        with dataflow.eval_model(model, subject.owns_model) as view:
            flow = dataflow.from_fx(view, _inputs_or_none(subject, notes) if wants_shapes else None)
        return "fx", flow
    except dataflow.DataflowUnavailable as exc:
        notes.append(str(exc))
    inputs = _inputs_or_none(subject, notes)
    if inputs is None:
        notes.append("the model does not trace and no example inputs are available")
        return "unavailable", None
    recorded = subject.recorded_dataflow
    if recorded is not None and recorded.failure is not None:   # reported once, as EG900, by the pass it rode on
        notes.append(f"the {dataflow.RECORDER_STEP} failed on the eval-mode forward (evalguard's bug, EG900)")
        return "unavailable", None
    if recorded is not None and recorded.inputs is inputs:
        notes.append("forward-hook view recorded during the eval-mode check's second eval pass")
        return "hooks", recorded.flow
    try:
        with dataflow.eval_model(model, subject.owns_model) as view:
            flow = dataflow.from_hooks(view, inputs)
    except dataflow.DataflowUnavailable as exc:
        notes.append(str(exc))
        return "unavailable", None
    return "hooks", flow


def _inputs_or_none(subject: AuditSubject, notes: list):
    try:
        return subject.inputs
    except TargetError as exc:
        notes.append(f"no example inputs: {exc}")
        return None
