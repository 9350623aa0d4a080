"""Paired forward passes: EG101, EG102, EG103, EG104, EG107.

EG101 reads the module tree only. The other rules run the model on a private copy, seeded
once, with as few passes as the selected rules allow:

* served mode (only when some module is in training mode): pass S1, pass S2 -> EG102;
* eval mode: the reference pass E1 (S1 itself when the model is served in eval) and a second
  pass E2 on the same input, both with a cheap per-module fingerprint (``fingerprint``):
  determinism (EG103) is decided on identical inputs, bitwise per module, so a random module
  deep inside is seen even when its effect at the output is below the tolerance. Any
  difference is then located at the strict tolerance (two more passes with hooks): modules
  whose outputs differ beyond it are EG103 sources; bit differences within it are kernel
  noise. Only a deterministic model gets the probe pass on rows of the batch (a smaller
  batch, reordered) -> EG104. A clean model served in eval costs 3 passes (E1, E2, probe).
* EG107 needs no pass of its own: every pass runs under ``torch.no_grad()``, and outputs that
  still require grad prove the forward turns autograd back on.

Hooks that name the responsible module only run after a difference was seen.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch

from evalguard.checks import running
from evalguard.checks.eval_mode import CHECK, runner
from evalguard.checks.eval_mode import batch as batching
from evalguard.checks.eval_mode.compare import (
    BATCH_TOLERANCE_FACTOR,
    Tolerance,
    compare_flat,
    compute_dtype,
    worst,
)
from evalguard.checks.eval_mode.fingerprint import Prints, Recorder
from evalguard.checks.eval_mode.mode_table import (
    ModeRow,
    capped_table,
    is_allowed,
    mode_fixed,
    mode_rows,
    summary,
)
from evalguard.checks.eval_mode.trace import Trace, grad_source, locate, rows_mapper
from evalguard.errors import TargetError
from evalguard.facts import ModeFacts, ModeRowFact, PairedForwardFacts
from evalguard.findings import Finding, Location, Severity
from evalguard.outcome import CheckOutcome, InternalFailure, Outcome
from evalguard.subject import AuditOptions, AuditSubject, EvalReference, ExampleInputs, state_token
from evalguard.tensors import Difference, flatten_outputs

DYNAMIC_RULES = ("EG102", "EG103", "EG104", "EG107")
EVIDENCE_CAP = 50


def run(subject: AuditSubject, options: AuditOptions) -> CheckOutcome:
    out = Outcome(options, CHECK.rules)
    model = _model_of(subject)
    rows = mode_rows(model, options.allow_stochastic)
    fixed = mode_fixed(model)
    paired, passes, dynamic = None, None, []
    if options.wants(*DYNAMIC_RULES):
        served_train = any(r.offending for r in rows) if fixed else any(m.training for m in model.modules())
        passes = PairedPasses(subject, options, served_train, fixed)
        try:
            dynamic = passes.run(model)
        except TargetError as exc:          # the user's forward failed: nothing dynamic could be judged
            out.error(str(exc), DYNAMIC_RULES)
        for rule, reason in passes.skipped.items():
            out.skip(rule, reason)
        for failure in passes.internal:
            out.internal_error(failure)
        out.ran(*DYNAMIC_RULES)
        paired = passes.facts
    if options.wants("EG101"):
        train_eval = passes.train_eval if passes is not None else None
        out.extend(training_mode_findings(subject.path, rows, fixed=fixed, train_eval=train_eval,
                                          origin=_factory_origin(subject, options)))
        out.ran("EG101")
    out.extend(dynamic)
    table, omitted = capped_table(rows)
    out.fact(ModeFacts(rows=tuple(ModeRowFact(**row) for row in table), omitted=omitted,
                       paired=paired, **summary(rows, model)))
    return out.done()


def _factory_origin(subject: AuditSubject, options: AuditOptions) -> str | None:
    """Weights loaded into a ``--model`` architecture: the file holds no mode, the factory chose it."""
    if subject.load is None or subject.load.mode_source != "--model factory" or not options.model_factory:
        return None
    return (f"the file holds weights only and carries no train/eval mode; the factory "
            f"{options.model_factory} returns the model in training mode: ")


def _model_of(subject: AuditSubject):
    model = subject.model
    if isinstance(model, torch.export.ExportedProgram):
        model = model.module()
    if not isinstance(model, torch.nn.Module):
        raise TargetError(f"{subject.path}: nothing to run: expected a torch.nn.Module, "
                          f"got {type(model).__name__}")
    return model


def _number(value: float) -> float | str:
    """Rounded for the report; JSON has no infinity (a shape mismatch), so that becomes text."""
    return round(value, 8) if math.isfinite(value) else str(value)


def _module_label(name: str, type_name: str) -> str:
    return f"{name} ({type_name})" if name else f"the top-level forward ({type_name})"


# --- EG101 ---------------------------------------------------------------------------------

#: Module names listed per type in the EG101 message (all of them are in the evidence).
NAMES_PER_TYPE = 3
READS_TRAINING = "its forward reads self.training"


def _grouped(offenders: list[ModeRow]) -> tuple[dict[str, list[str]], str]:
    """{type: [module names]} in first-seen order, and the same as text for the message."""
    groups: dict[str, list[str]] = {}
    for row in offenders:
        groups.setdefault(row.type, []).append(row.module or "(root)")
    parts = []
    for type_name, names in sorted(groups.items(), key=lambda item: -len(item[1])):
        shown = ", ".join(names[:NAMES_PER_TYPE])
        more = f", +{len(names) - NAMES_PER_TYPE} more" if len(names) > NAMES_PER_TYPE else ""
        parts.append(f"{type_name} x{len(names)}: {shown}{more}")
    return groups, "; ".join(parts)


def _effect(train_eval: Difference | None) -> str:
    """How much the training mode changed the outputs of the example inputs, when measured."""
    if train_eval is None:
        return ""
    if train_eval.max_abs_diff == 0:
        return ("; on the example inputs the train- and eval-mode outputs are bit-identical, so here the mode "
                "changes nothing (e.g. every dropout probability is 0), but it will once the config differs")
    return (f"; on the example inputs the train-mode outputs differ from the eval-mode ones by up to "
            f"{train_eval.max_abs_diff:.3g} ({train_eval.name})")


def training_mode_findings(path: str, rows: list[ModeRow], fixed: bool = False,
                           train_eval: Difference | None = None, origin: str | None = None) -> list[Finding]:
    """EG101; ``train_eval`` is the measured train-vs-eval difference of the outputs, when the passes ran;
    ``origin`` says where the mode came from when the file itself carries none."""
    offenders = [r for r in rows if r.offending]
    if not offenders:
        return []
    counts = Counter(r.type for r in offenders)
    groups, listing = _grouped(offenders)
    allowed = [r.module for r in offenders if r.allowed]
    only_allowed = len(allowed) == len(offenders)
    if fixed:
        message = (f"the exported graph holds {len(offenders)} training-mode op(s) ({listing}); "
                   f"call model.eval() before torch.export")
    else:
        what = ("whose forward reads self.training" if all(r.reason == READS_TRAINING for r in offenders)
                else "whose behaviour differs between train and eval")
        fix = "call model.eval() in the factory or before serving" if origin else "call model.eval() before serving"
        message = (f"{origin or ''}{len(offenders)} module(s) {what} are in training mode ({listing})"
                   f"{_effect(train_eval)}; {fix}")
    if only_allowed:
        message += "; all of them are allowed stochastic modules (--allow-stochastic)"
    evidence = {
        "count": len(offenders),
        "types": dict(counts),
        "by_type": {t: names[:EVIDENCE_CAP] for t, names in groups.items()},
        "modules": [{"module": r.module, "type": r.type, "reason": r.reason} for r in offenders[:EVIDENCE_CAP]],
        "root_training": next((r.mode == "train" for r in rows if r.module == ""), None),
    }
    if train_eval is not None:
        evidence["train_eval_max_abs_diff"] = _number(train_eval.max_abs_diff)
        evidence["train_eval_output"] = train_eval.name
    if allowed:
        evidence["allowed"] = allowed[:EVIDENCE_CAP]
    first = next((r.module for r in offenders if r.module), None)
    return [Finding("EG101", message, Location(path, module=first), evidence,
                    severity=Severity.INFO if only_allowed else None)]


# --- EG102, EG103, EG104, EG107 --------------------------------------------------------------

def _training_pass_failed(error: str) -> str:
    """Why the served (training-mode) passes could not run; the eval-mode ones still do."""
    reason = error.rpartition("): ")[2] or error
    if "target" in reason.lower():
        return (f"the training-mode forward needs targets ({reason}): the model computes losses in training "
                f"mode, so its served-mode passes cannot run on inputs alone; the eval-mode passes still ran")
    return f"the training-mode forward fails on the example inputs ({reason}); the eval-mode passes still ran"


class PairedPasses:
    def __init__(self, subject: AuditSubject, options: AuditOptions, served_train: bool, fixed: bool = False):
        self.subject = subject
        self.options = options
        self.served_train = served_train
        self.fixed = fixed  # torch.export graph: mode baked in, eval() impossible
        self.tol = Tolerance.from_options(options.tolerances)
        self.batch_tol = Tolerance.from_options(options.tolerances, BATCH_TOLERANCE_FACTOR)
        self.passes = 0
        self.notes: list[str] = []
        self.skipped: dict[str, str] = {}       # rule -> why it could not be judged
        self.batch_probe: dict[str, Any] | None = None
        self.facts: PairedForwardFacts | None = None
        self.last_requires_grad = False
        self.last_prints = Prints(note="not recorded")
        self.train_eval: Difference | None = None   # served (train) outputs vs eval outputs, when both ran
        self.last_leaves: tuple = ()
        self.served_leaves: tuple = ()
        self.eval_leaves: tuple | None = None     # the first pass with every module in eval mode
        self.probe_pass: tuple[ExampleInputs, tuple] | None = None   # EG104's probe inputs and outputs
        self.internal: list[InternalFailure] = []   # probes on these passes that broke (EG900)

    def run(self, model) -> list[Finding]:
        inputs = self.subject.inputs
        # Tolerances for the dtype the model computes in (float16/bfloat16 get their own defaults).
        self.tol, self.batch_tol = Tolerance.paired(self.options.tolerances, compute_dtype(model))
        private = runner.PrivateModel.of(model, self.options.device, owned=self.subject.owns_model)
        completed = False
        try:
            with runner.seeded(self.options.seed), running.exact_kernels(self.options.device):
                findings = self._all(private.module, runner.to_device(inputs, self.options.device))
            completed = True
            return findings
        finally:
            private.release()
            if completed:   # a model that failed on a later pass runs its own ONNX reference, as before
                self._share_reference(model, inputs)
            self.facts = PairedForwardFacts(
                copy=private.method, passes=self.passes, seed=self.options.seed,
                served_mode="train" if self.served_train else "eval",
                tolerance=self.tol.as_evidence(), batch_tolerance=self.batch_tol.as_evidence(),
                batch_probe=self.batch_probe, notes=tuple(self.notes))

    def _share_reference(self, model, inputs: ExampleInputs) -> None:
        """Offer the eval pass to later checks (the ONNX reference): only a CPU pass of an
        ``nn.Module`` whose mode eval() really sets, on the subject's own inputs."""
        if self.eval_leaves is None or self.fixed or self.options.device != "cpu" \
                or not isinstance(model, torch.nn.Module) or model is not self.subject.model:
            return
        state = state_token(model)
        second = None if self.probe_pass is None else EvalReference(*self.probe_pass, state)
        self.subject.eval_reference = EvalReference(inputs, self.eval_leaves, state, second)

    def skip(self, rules: str, reason: str) -> None:
        for rule in rules.split("/"):
            self.skipped.setdefault(rule, reason)

    # one pass ------------------------------------------------------------------------------
    def _run(self, work, inputs: ExampleInputs, record: bool = False) -> dict[str, torch.Tensor]:
        self.passes += 1
        if record:
            with Recorder(work) as self.last_prints:
                output = runner.call(work, inputs)
        else:
            output = runner.call(work, inputs)
        named = flatten_outputs(output)
        if not named:
            raise runner.ForwardFailed(f"forward returned {type(output).__name__} with no tensors")
        self.last_requires_grad = any(t.requires_grad for _, t in named)
        # Detached copies: a later pass (in-place ops, output caches) must not alter them.
        self.last_leaves = tuple((name, t.detach().clone()) for name, t in named)
        return dict(self.last_leaves)

    def _pass(self, work, inputs: ExampleInputs, record: bool = False) -> dict[str, torch.Tensor]:
        try:
            return self._run(work, inputs, record)
        except runner.ForwardFailed as exc:
            raise runner.first_pass_error(inputs, str(exc)) from exc

    def _replay(self, work, inputs: ExampleInputs):
        def replay():
            self.passes += 1
            return runner.call(work, inputs)
        return replay

    # the sequence ----------------------------------------------------------------------------
    def _all(self, work, inputs: ExampleInputs) -> list[Finding]:
        findings: list[Finding] = []
        if not self.served_train:  # served in eval mode: the served pass is the eval reference
            reference = self._served_pass(work, inputs, findings, record=True)
            self.eval_leaves = self.served_leaves
            findings.extend(self._eval_checks(work, inputs, reference, self.last_prints))
            return findings
        served = None
        if self.options.wants("EG102", "EG107"):
            # Train-mode passes move BatchNorm statistics even under no_grad: put them back before eval.
            buffers = runner.Snapshot.take(work, parameters=False)
            try:
                served = self._served_pass(work, inputs, findings)
                if self.options.wants("EG102"):
                    findings.extend(self._served_pair(work, inputs, served))
            except TargetError as exc:   # e.g. a detection model: training mode needs targets
                served = None
                self.skip("EG102/EG107", _training_pass_failed(str(exc)))
                if not self.options.wants("EG103", "EG104"):
                    work.eval()
                    self._pass(work, inputs)   # a forward failing in eval mode too is the target's error
            buffers.restore(work, parameters=False)
        if not self.options.wants("EG103", "EG104"):
            return findings
        if self.fixed and not getattr(work, "evalguard_switchable", False):
            self.skip("EG103/EG104", "an exported graph keeps the mode it was exported in; "
                                     "re-export after model.eval()")
            return findings
        work.eval()
        reference = self._pass(work, inputs, record=True)
        self.eval_leaves = self.last_leaves
        if served is not None:
            self.train_eval = max(compare_flat(served, reference, Tolerance(0.0, 0.0)),
                                  key=lambda d: d.max_abs_diff)
        findings.extend(self._eval_checks(work, inputs, reference, self.last_prints))
        return findings

    def _served_pass(self, work, inputs: ExampleInputs, findings: list[Finding],
                     record: bool = False) -> dict[str, torch.Tensor]:
        """The first pass in the served mode; it also answers EG107 (it runs under no_grad)."""
        outputs = self._pass(work, inputs, record)
        self.served_leaves = self.last_leaves
        if self.options.wants("EG107") and self.last_requires_grad:
            findings.append(self._grad_finding(work, inputs))
        return outputs

    def _served_pair(self, work, inputs: ExampleInputs, first) -> list[Finding]:
        diff = worst(compare_flat(self._pass(work, inputs), first, self.tol))
        if diff is None:
            return []
        trace = locate(work, self._replay(work, inputs), self._replay(work, inputs), self.tol)
        return [self._random_finding("EG102", diff, trace)]

    def _eval_checks(self, work, inputs: ExampleInputs, reference, prints: Prints) -> list[Finding]:
        served_eval = not self.served_train
        random_rule = "EG103" if self.options.wants("EG103") else (
            "EG102" if served_eval and self.options.wants("EG102") else None)
        if not (random_rule or self.options.wants("EG104")):
            return []
        findings = []
        random = self._same_input(work, inputs, reference, prints, random_rule, findings)
        if served_eval and random and random_rule == "EG103" and self.options.wants("EG102"):
            self.notes.append("served in eval mode: the served passes are the eval passes, so "
                              "the nondeterminism is reported once, as EG103")
        if not self.options.wants("EG104"):
            return findings
        if random:
            self.skip("EG104", "eval-mode outputs are random, so batch dependence "
                               "cannot be told apart from randomness")
            return findings
        probe, batch_diff = self._batch_probe(work, inputs, reference)
        if batch_diff is not None:
            findings.append(self._batch_finding(work, inputs, probe, batch_diff))
        return findings

    def _same_input(self, work, inputs, reference, prints: Prints, random_rule, findings) -> bool:
        """Pass E2 on the same input: True when the eval model is random (finding added for ``random_rule``).

        Decided bitwise per module call; a difference is then located at the strict tolerance,
        so a random module counts even when the model's outputs still agree within it.
        """
        from evalguard.checks.architecture.dataflow import ride_along

        with ride_along(self.subject, self.options, work) as recording:
            second = self._pass(work, inputs, record=True)
        if recording is not None and recording.failure is not None:   # the probe broke, not the model
            from evalguard.checks.architecture.dataflow import RECORDER_STEP

            self.internal.append(InternalFailure(f"{RECORDER_STEP} riding on the eval-mode forward",
                                                 recording.failure))
        diff = worst(compare_flat(second, reference, self.tol))
        first_module = prints.first_difference(self.last_prints)
        if diff is None and first_module is None:
            self.notes.append("eval passes on the same input: every module's outputs bit-identical"
                              if not prints.note else f"eval passes on the same input agree ({prints.note})")
            return False
        # Outputs within tolerance: module outputs are held to the loosest tolerance the user set.
        module_tol = self.tol if diff is not None else self.tol.loosest()
        trace = locate(work, self._replay(work, inputs), self._replay(work, inputs), module_tol)
        if diff is None and not trace.sources:
            self.notes.append(f"eval passes on the same input differ in the last bits from module "
                              f"{first_module or '(root)'!r} on, within the tolerance: nondeterministic "
                              f"kernels, not randomness")
            return False
        if random_rule:
            within = diff is None
            if within:
                diff = max(compare_flat(second, reference, Tolerance(0.0, 0.0)), key=lambda d: d.max_abs_diff)
            findings.append(self._random_finding(random_rule, diff, trace, within_tolerance=within))
        return True

    def _batch_probe(self, work, inputs, reference):
        """(probe, failing row difference or None) for EG104, on a model known to be deterministic."""
        batch, why = batching.batch_size(inputs)
        sequence_first = batching.sequence_first_module(work)
        if sequence_first:
            batch, why = None, f"the batch dimension is unknown: {sequence_first} takes sequence-first inputs"
        if batch is None:
            self.skip("EG104", why)
            return None, None
        rows, companions = batching.probe_rows(batch)
        candidates = [batching.make_probe(inputs, batch, rows, companions)]
        if len(rows) + companions == 1:  # e.g. BatchNorm1d refuses a batch of one: add a companion
            candidates.append(batching.make_probe(inputs, batch, rows, 1))
        for probe in candidates:
            try:
                out = self._run(work, probe.inputs)
                self.probe_pass = (probe.inputs, self.last_leaves)
                break
            except runner.ForwardFailed as exc:
                failure = f"forward failed on {probe.inputs.source}: {exc}"
        else:
            self.skip("EG104", failure)
            return None, None
        self.batch_probe = {"batch": batch, "rows": probe.rows, "companions": probe.companions}
        quantized = batching.dynamic_quantized(work)
        if quantized:   # int8 activation scales come from the whole batch: judged with the int8 budget
            self.batch_tol = batching.int8_tolerance(reference, self.batch_tol)
            self.notes.append(batching.int8_note(quantized))
        diffs = batching.compare_probe(probe, out, reference, self.batch_tol)
        if not diffs:
            self.skip("EG104", "no output can be compared sample by sample "
                               "(none keeps the batch dimension and its other dimensions)")
            return None, None
        return probe, worst(diffs)

    # findings --------------------------------------------------------------------------------
    def _random_finding(self, rule: str, diff: Difference, trace: Trace, within_tolerance: bool = False) -> Finding:
        sources = trace.sources
        allow = self.options.allow_stochastic
        only_allowed = bool(sources) and all(is_allowed(s.module, allow) for s in sources)
        where = (f"the difference starts in {_module_label(sources[0].module, sources[0].type)}"
                 if sources else trace.note or "module not identified")
        if within_tolerance and sources:
            where += f" (max abs diff {sources[0].max_abs_diff:.3g} there)"
        if sources and sources[0].random_calls:
            where += f", which calls {', '.join(sources[0].random_calls[:3])}"
        if len(sources) > 1:
            where += f" and {len(sources) - 1} more module(s)"
        numbers = f"max abs diff {diff.max_abs_diff:.3g} in {diff.name}"
        if within_tolerance:
            effect = (f"the outputs still agree within the tolerance ({numbers})" if diff.max_abs_diff
                      else "the outputs happen to be bit-identical")
            pass_kind = "after eval()" if rule == "EG103" else f"in the served ({'training' if self.served_train else 'eval'}) mode"
            message = (f"a module is random between two passes on the same input {pass_kind}; {where}; "
                       f"{effect}, but a larger model, other inputs or weights can move them")
        elif rule == "EG103":
            message = f"outputs still differ between two passes on the same input after eval() ({numbers}); {where}"
        else:
            mode = "training" if self.served_train else "eval"
            message = (f"two forward passes on the same input disagree in the served ({mode}) mode "
                       f"({numbers}); {where}")
        if only_allowed:
            message += "; allowed stochastic module(s) (--allow-stochastic)"
        evidence = self._evidence(diff, trace, self.tol)
        evidence["outputs_within_tolerance"] = within_tolerance
        return Finding(rule, message, self._location(sources), evidence,
                       severity=Severity.INFO if only_allowed else None)

    def _batch_finding(self, work, inputs, probe, diff: Difference) -> Finding:
        trace = locate(work, self._replay(work, inputs), self._replay(work, probe.inputs),
                       self.batch_tol, rows_mapper(probe.rows, probe.batch, probe.size))
        trace = batching.without_quantized(work, trace)
        sources = trace.sources
        where = (f"first module: {_module_label(sources[0].module, sources[0].type)}"
                 if sources else trace.note or "module not identified")
        message = (f"in eval mode a sample's output depends on the rest of its batch: {probe.inputs.source} "
                   f"run as their own batch differ from the same rows in the batch of {probe.batch} "
                   f"(max abs diff {diff.max_abs_diff:.3g} in {diff.name}); {where}")
        evidence = self._evidence(diff, trace, self.batch_tol)
        evidence.update(batch=probe.batch, rows=probe.rows, companions=probe.companions)
        return Finding("EG104", message, self._location(sources), evidence)

    def _grad_finding(self, work, inputs) -> Finding:
        trace = grad_source(work, self._replay(work, inputs))
        source = trace.sources[0] if trace.sources else None
        who = f"{_module_label(source.module, source.type)} turns" if source else "the forward turns"
        message = (f"outputs require grad even under torch.no_grad(): {who} autograd back on, so every "
                   f"inference call builds an autograd graph; wrap serving in torch.inference_mode()")
        evidence = {"module": (source.module or None) if source else None,
                    "module_type": source.type if source else None}
        if trace.note:
            evidence["note"] = trace.note
        return Finding("EG107", message, self._location(trace.sources), evidence)

    def _location(self, sources) -> Location:
        module = sources[0].module if sources else ""
        return Location(self.subject.path, module=module or None)

    def _evidence(self, diff: Difference, trace: Trace, tol: Tolerance) -> dict:
        evidence = {
            "max_abs_diff": _number(diff.max_abs_diff), "max_rel_diff": _number(diff.max_rel_diff),
            "mismatched_fraction": _number(diff.mismatched_fraction), "output": diff.name,
            "shape_mismatch": diff.shape_mismatch,
            "module": (trace.sources[0].module or None) if trace.sources else None,
            "module_type": trace.sources[0].type if trace.sources else None,
            "sources": [{"module": s.module, "type": s.type, "max_abs_diff": _number(s.max_abs_diff),
                         "random_calls": s.random_calls} for s in trace.sources[:EVIDENCE_CAP]],
            "tolerance": tol.as_evidence(),
        }
        if trace.note:
            evidence["note"] = trace.note
        return evidence
