"""EG401-EG405: the ONNX file must compute what the eval-mode PyTorch model computes.

For a model target: export the model in eval mode once (a deep copy when the model is the
user's own object) or take ``--onnx FILE``, read the graph for training-mode ops (EG403), run
ONNX Runtime's CPU provider on the example inputs and compare with PyTorch output by output
(EG401), run the same file at a second batch size (EG404) and, with ``--device cuda`` where a
GPU and the CUDA provider exist, compare the CUDA provider (EG405). For a bare ``.onnx``
target only the static reading runs.

Facts for the report are one ``OnnxFacts``: the exporter, ORT providers, the parity table (one
row per output and comparison, also when all pass), opsets, the file when it outlives the audit,
and notes. Every rule says whether it ran; one that could not run says why.
"""
from __future__ import annotations

import contextlib
import copy
import re
import tempfile
import warnings
from pathlib import Path

from evalguard.checks.onnx import CHECK
from evalguard.checks.running import in_eval_mode
from evalguard.errors import InternalError, TargetError
from evalguard.facts import OnnxFacts
from evalguard.findings import Finding, Location
from evalguard.outcome import CheckOutcome, Outcome
from evalguard.subject import AuditOptions, AuditSubject

RULES = CHECK.rules
#: The backend matrix's rules (--backends); the rest judge the ONNX file.
BACKEND_RULES = ("EG406", "EG407")
ONNX_RULES = tuple(rule for rule in RULES if rule not in BACKEND_RULES)
CPU_VS_TORCH = "onnxruntime-cpu vs torch-cpu"
#: Nodes listed in an EG403 finding's evidence; the count covers the rest.
MAX_NODES = 20


def run(subject: AuditSubject, options: AuditOptions) -> CheckOutcome:
    out = Outcome(options, RULES)
    if not out.selected:
        return out.done()
    if subject.model is None:
        if subject.onnx_path:
            _static_only(subject, options, out)
        return out.done()
    _ModelAudit(subject, options, out).run()
    return out.done()


def _facts(values: dict) -> OnnxFacts:
    return OnnxFacts(**{key: tuple(v) if isinstance(v, list) else v for key, v in values.items()})


def _static_only(subject: AuditSubject, options: AuditOptions, out: Outcome) -> None:
    """A bare ONNX file: what the graph says, without a model to compare against.

    A fixed first input dimension is recorded, not reported: static-batch files are often
    deliberate (mobile, TensorRT engines), and without the model we cannot tell a batch axis
    from a feature axis.
    """
    from evalguard.checks.onnx import static as onnx_static

    proto = onnx_static.load(subject.onnx_path)
    out.fact(_facts({"file": subject.onnx_path, "opset": onnx_static.opsets(proto),
                     "fixed_first_dims": onnx_static.fixed_batch_inputs(proto)}))
    no_model = "no PyTorch model to compare with (pass the model as TARGET and this file with --onnx)"
    out.skip(("EG401", "EG404"), no_model)
    out.not_applicable(BACKEND_RULES, "a bare ONNX file: no model to build other backends from")
    out.not_applicable(("EG402", "EG405"), "a bare ONNX file: nothing is exported or run")
    if options.wants("EG403"):
        ops = onnx_static.training_mode_ops(proto)
        out.extend(_training_op_findings(ops, subject.path, subject.onnx_path, exported=False))
        out.ran("EG403")


def _where(located: dict) -> str:
    """The localisation in one sentence of the EG401 message."""
    module = located.get("first_divergent_module")
    if module is None:
        return f"First divergent module: not found ({located.get('first_divergent_module_reason')})"
    ops = ", ".join(dict.fromkeys(n["op_type"] for n in located.get("onnx_nodes", ())))
    kind = located.get("module_type") or "module"
    text = f"First divergent module: {module} ({kind}{'; ONNX ' + ops if ops else ''})"
    if located.get("folded"):
        text += f", with {', '.join(located['folded'])} folded into the same ONNX node(s)"
    error = located.get("output_max_abs_error")
    if located.get("compared_output"):   # the divergence began between compared modules
        return f"{text}: {located['note']}"
    if located.get("inputs_match"):
        text += (f": its output is off by up to {error} while its inputs match "
                 f"(max abs error {located.get('input_max_abs_error')})")
    else:
        text += f": its output is off by up to {error} (its inputs could not be compared)"
    return f"{text}; {located['note']}" if located.get("note") else text


def _training_op_findings(ops, target: str, onnx_file: str | None, exported: bool) -> list[Finding]:
    """One EG403 finding per op type, pointing at the first module, listing the nodes."""
    findings = []
    for op_type in sorted({op.op_type for op in ops}):
        group = [op for op in ops if op.op_type == op_type]
        first = group[0]
        where = f" (first: {first.module})" if first.module else f" (first: node {first.node})"
        if exported:
            cause = ("although the model was exported in eval mode: its forward hard-codes training "
                     "behaviour (e.g. F.dropout(..., training=True) or F.batch_norm(..., training=True))")
        else:
            cause = ("the file was exported from a model in training mode (TrainingMode.TRAINING, "
                     "or the dynamo exporter on a model without .eval())")
        message = (f"{len(group)} {op_type} node(s) in the ONNX graph run in training mode{where}: "
                   f"{first.detail}; {cause}")
        if op_type == "Dropout":
            message += ". ONNX Runtime's optimiser deletes such nodes, other runtimes may not"
        evidence = {"onnx_file": onnx_file, "op_type": op_type, "count": len(group),
                    "nodes": [{"node": op.node, "module": op.module, "detail": op.detail}
                              for op in group[:MAX_NODES]]}
        findings.append(Finding("EG403", message, Location(target, module=first.module), evidence))
    return findings


class _ModelAudit:
    """One model target: export (or --onnx FILE) once, then every comparison on that file."""

    def __init__(self, subject: AuditSubject, options: AuditOptions, out: Outcome):
        self.subject, self.options, self.out = subject, options, out
        self.info: dict = {}          # OnnxFacts fields, filled as the steps run
        self.findings = out.findings
        self.location = Location(subject.path)
        self.notes: list[str] = []
        self.cuda_reason: str | None = None
        self.upcast = False           # a bfloat16 model converted to float32 for ONNX Runtime (precision.py)
        self.shared = None            # the eval-mode check's EvalReference, when this audit used it
        self._second = None           # (CallSpec, _other_batch's result) for that call spec

    def run(self) -> None:
        from evalguard.checks.onnx.export import CallSpec

        if self.options.device != "cuda":
            self.out.not_applicable("EG405", f"CUDA parity runs with --device cuda (this run: {self.options.device})")
        elif self.options.wants("EG405"):
            from evalguard.checks.onnx.cuda import unavailable_reason

            self.cuda_reason = unavailable_reason(self.options.device)
            if self.cuda_reason:
                self.out.skip("EG405", self.cuda_reason)
        if self.options.onnx_file:
            self.out.not_applicable("EG402", "--onnx FILE given: nothing is exported")
        if tuple(self.options.backends) == ("onnxruntime",):
            self.out.not_applicable(BACKEND_RULES, "only the onnxruntime backend was asked for (--backends)")
        try:
            inputs = self.subject.inputs
        except TargetError as exc:
            self.out.error(str(exc))
            return self._done()
        from evalguard.checks.onnx.precision import dynamic_quantized, quantized_skip_reason

        quantized = dynamic_quantized(self.subject.model)
        if quantized:
            self._skip_all(quantized_skip_reason(quantized), backends=True)
            return self._done()
        self.spec = CallSpec.of(inputs)
        if not self.spec.tensors:
            self._skip_all("the model's example inputs hold no tensors", backends=True)
            return self._done()
        model = self._eval_model()
        if model is None:
            return self._done()
        from evalguard.checks.onnx import precision

        with model as self.model, tempfile.TemporaryDirectory(prefix="evalguard-onnx-",
                                                              ignore_cleanup_errors=True) as tmp:
            self.session = None
            try:
                with precision.float32_reference(self.model) as self.upcast:
                    if self.upcast:   # bfloat16: ONNX Runtime CPU cannot run it; export and compare in float32
                        self.spec = CallSpec.of(precision.float32_inputs(inputs))
                        self._note(precision.NOTE)
                    try:
                        # after an upcast the eval-mode check's bfloat16 pass is not this float32 model's
                        self.expected = (None if self.upcast else self._shared_reference()) or self._reference()
                    except TargetError as exc:
                        self.out.error(str(exc))
                        return self._done()
                    if not self.expected:
                        self._skip_all("the model returns no tensors", backends=True)
                        return self._done()
                    needs_file = self.options.wants(*ONNX_RULES) or bool(
                        {"ort-optimized", "openvino-onnx", "ort-int8"} & set(self.options.backends))
                    path = self._onnx_file(tmp) if needs_file else None
                    if path is not None:
                        self._check_file(path)
                    if self.options.wants(*BACKEND_RULES) and not self.upcast:
                        self._backends(path, tmp)
                if self.upcast and self.options.wants(*BACKEND_RULES):
                    self._bfloat16_backends(inputs, path, tmp)
            finally:
                self.session = None   # release the file before the directory goes
        return self._done()

    def _bfloat16_backends(self, inputs, path, tmp) -> None:
        """The backend matrix of a bfloat16 model builds the bfloat16 model that is deployed and
        compares it with eager PyTorch in bfloat16 (bfloat16 tolerances); only ort-optimized runs
        the float32 file, against the float32 copy (``_file_batches``)."""
        from evalguard.checks.onnx.export import CallSpec

        self.spec = CallSpec.of(inputs)
        try:
            self.expected = self._shared_reference() or self._reference()
        except TargetError as exc:
            self.out.skip(BACKEND_RULES, str(exc))
            return
        self._note("bfloat16 model: the backends (but ort-optimized, which runs the float32 ONNX file "
                   "against the float32 copy) were built from the bfloat16 model and compared with eager "
                   "PyTorch in bfloat16")
        self._backends(path, tmp)

    def _eval_model(self):
        """A context giving the model in eval mode: the loaded model itself for file targets
        (private to the audit; eval-mode passes change no buffers, so putting the mode flags
        back is all the restoring needed, and copying a 400 MB model costs more than this
        check's own passes), a deep copy of a factory's or a live model (the user's object)."""
        if self.subject.owns_model:
            return in_eval_mode(self.subject.model)
        try:
            with warnings.catch_warnings():   # deep-copying torch internals can warn about deprecations
                warnings.simplefilter("ignore")
                return contextlib.nullcontext(copy.deepcopy(self.subject.model).eval())
        except Exception as exc:  # noqa: BLE001 - exporting needs eval mode, and the original is not ours
            self._skip_all(f"the model cannot be deep-copied "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})",
                           backends=True)
            return None

    # -- steps ---------------------------------------------------------------------------
    def _shared_reference(self):
        """The eval-mode check's eval pass on the same inputs and the same, unchanged weights
        (``AuditSubject.eval_reference``), named as ``reference`` names them; None otherwise.
        Only the reference is shared: the determinism check after a mismatch runs a real pass."""
        from evalguard.checks.onnx.export import unique

        shared = self.subject.eval_reference
        if shared is None or self.options.device != "cpu" or not shared.matches(self.subject.inputs,
                                                                                 self.subject.model):
            return None
        self.shared = shared
        names = unique([name for name, _ in shared.leaves])
        return [(name, tensor) for name, (_, tensor) in zip(names, shared.leaves)]

    def _shared_second_batch(self) -> tuple[int, list, list, str] | None:
        """EG104's batch probe as the PyTorch side at a second batch size: (size, tensors,
        outputs, what the inputs are), when the main reference was shared and the probe differs
        from the example inputs only in the first dimension of the batched tensors; else None."""
        from evalguard.checks.onnx.export import CallSpec, unique

        probe = self.shared.second_batch if self.shared is not None else None
        if probe is None:
            return None
        spec = CallSpec.of(probe.inputs)
        if spec.names != self.spec.names or not _same_constants(spec, self.spec):
            return None
        sizes = set()
        for mine, theirs in zip(self.spec.tensors, spec.tensors):
            if self.spec.batched(mine):
                if theirs.dim() != mine.dim() or theirs.shape[1:] != mine.shape[1:]:
                    return None
                sizes.add(int(theirs.shape[0]))
            elif theirs is not mine:
                return None
        if len(sizes) != 1 or sizes == {self.spec.batch()}:
            return None
        names = unique([name for name, _ in probe.leaves])
        return (sizes.pop(), list(spec.tensors), [(name, t) for name, (_, t) in zip(names, probe.leaves)],
                f"{probe.inputs.source} (the eval-mode check's batch probe, reused)")

    def _other_batch(self) -> tuple[int, list, list | None, str, Exception | None]:
        """(batch size, tensors, PyTorch's outputs, what the inputs are, why PyTorch failed there)
        for the comparisons at a second batch size: EG104's probe when it can be reused, else one
        sample fewer (two for an example batch of one), repeating samples. Computed once per call
        spec: EG404 and the backend matrix compare at the same second batch."""
        if self._second is not None and self._second[0] is self.spec:
            return self._second[1]
        shared = self._shared_second_batch()
        if shared is not None:
            result = (*shared, None)
        else:
            batch = self.spec.batch()
            second = batch - 1 if batch >= 2 else 2
            tensors = self.spec.resized(second)
            try:
                expected, error = self._reference(tensors), None
            except InternalError:
                raise
            except Exception as exc:  # noqa: BLE001 - the model itself may not take this batch size
                expected, error = None, exc
            result = (second, tensors, expected, f"the example inputs resized to batch {second}", error)
        self._second = (self.spec, result)
        return result

    def _reference(self, tensors=None):
        from evalguard.checks.onnx.export import reference

        try:
            return reference(self.model, self.spec, tensors)
        except InternalError:
            raise                  # evalguard's own rebuild broke: EG900, never "forward failed"
        except Exception as exc:  # noqa: BLE001 - the user's forward may raise anything
            if tensors is not None:
                raise
            text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            raise TargetError(f"{self.subject.path}: forward failed on the example inputs: {text}") from exc

    def _onnx_file(self, tmp: str) -> str | None:
        """The user's file, or our export of the eval-mode copy; None after EG402/EG401."""
        from evalguard.checks.onnx import export as onnx_export
        from evalguard.checks.onnx import runtime as onnx_runtime

        if self.options.onnx_file:
            path = self.options.onnx_file
            if not Path(path).is_file():
                raise TargetError(f"--onnx: no such file {path}")
            self.exported = False
            self.info.update(exporter="user file", file=path)
            if self._needs_runtime():
                try:
                    self.session = onnx_runtime.session(path)
                except Exception as exc:  # noqa: BLE001 - ORT rejects bad files in many ways
                    from evalguard.checks.onnx.precision import load_hint

                    self._add("EG401", f"ONNX Runtime cannot load {path}: {onnx_runtime.short(exc)}"
                                       f"{load_hint(self.subject.model, str(exc))}",
                              {"onnx_file": path, "error": onnx_runtime.short(exc)})
                    self._skip_all(f"ONNX Runtime cannot load {path}")
                    return None
            return path

        self.exported = True
        path = self._export_path(tmp)
        flat = onnx_export.FlatModel(self.model, self.spec)
        names = [name for name, _ in self.expected]
        outputs = [tensor for _, tensor in self.expected]

        def validate(candidate: str) -> None:
            if self._needs_runtime():
                try:
                    self.session = onnx_runtime.session(candidate)
                except Exception as exc:
                    raise RuntimeError(f"onnxruntime cannot load the exported file: "
                                       f"{onnx_runtime.short(exc)}") from exc

        # A file in our temporary folder may keep its weights beside it (less memory to write
        # and to read back); a kept file stays one self-contained .onnx.
        result = onnx_export.export(flat, self.spec.names, outputs, names, path, self.subject.path, validate,
                                    preferred=self.options.onnx_exporter,
                                    external_data=not self.options.keep_onnx)
        self.info["exporters_tried"] = result.attempts
        self.out.ran("EG402")
        if not result.ok:
            tried = ", ".join(a["exporter"] for a in result.attempts)
            self._add("EG402", f"the eval-mode model could not be exported to ONNX (tried {tried}): "
                               f"{result.summary()}",
                      {"exporters_tried": [a["exporter"] for a in result.attempts],
                       "errors": {a["exporter"]: a["error"] for a in result.attempts}})
            self._skip_all("the model could not be exported to ONNX (EG402)")
            return None
        self.info["exporter"] = result.exporter
        if self.options.keep_onnx:
            self.info["file"] = path
        return path

    def _export_path(self, tmp: str) -> str:
        if not self.options.keep_onnx:
            return str(Path(tmp) / "model.onnx")
        folder = Path(self.options.keep_onnx)
        folder.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.subject.path).name).strip("._") or "model"
        return str(folder / f"{stem.removesuffix('.onnx')}.onnx")

    def _needs_runtime(self) -> bool:
        return self.options.wants("EG401", "EG404", "EG405")

    def _check_file(self, path: str) -> None:
        from evalguard.checks.onnx import static as onnx_static

        proto = onnx_static.load(path)
        self.info["opset"] = onnx_static.opsets(proto)
        if self.options.wants("EG403"):
            strip = "model" if self.exported else None
            ops = onnx_static.training_mode_ops(proto, strip_prefix=strip)
            self.findings += _training_op_findings(ops, self.subject.path,
                                                   None if self.exported else path, self.exported)
            self.out.ran("EG403")
        del proto
        if self.session is None:
            return
        self.path = path
        self.info["providers"] = list(self.session.get_providers())
        parity_ok = self._parity()
        if parity_ok is None:
            return
        if self.options.wants("EG404"):
            self._second_batch(parity_ok)
        if self.options.device == "cuda" and self.options.wants("EG405") and not self.cuda_reason:
            self._cuda(parity_ok)

    def _run_ort(self, tensors, session=None):
        from evalguard.checks.onnx import runtime as onnx_runtime

        session = session or self.session
        return onnx_runtime.run(session, onnx_runtime.feeds(session, self.spec.names, tensors))

    def _rows(self, outputs, expected, comparison: str, batch, histogram: bool):
        """Parity rows for the ONNX outputs against PyTorch leaves, paired by ``align``."""
        from evalguard.checks.onnx import compare as onnx_compare
        from evalguard.checks.onnx import detection

        onnx_names = [o.name for o in self.session.get_outputs()]
        names = [n for n, _ in expected]
        # detection outputs (boxes/scores/labels per image): matched boxes, not raw tensors
        detected = detection.parity_rows(names, onnx_names, outputs, [t for _, t in expected],
                                         self.options.tolerances, comparison=comparison, batch=batch)
        if detected is not None:
            rows, covered = detected
            keep = [(n, o) for n, o in zip(onnx_names, outputs) if n not in covered]
            rest = [(n, t) for n, t in expected if n not in covered]
            self._note(f"detection outputs: {detection.METHOD}")
            return rows + [onnx_compare.row(n, n, o, dict(rest)[n], self.options.tolerances, comparison=comparison,
                                            batch=batch, histogram=histogram) for n, o in keep if n in dict(rest)], {}
        pairs, torch_only, onnx_only = onnx_compare.align(
            names, [tuple(t.shape) for _, t in expected], onnx_names, [tuple(o.shape) for o in outputs])
        if torch_only:
            self.info["outputs_not_in_file"] = [names[i] for i in torch_only]
        if onnx_only:
            self.info["outputs_not_in_model"] = [onnx_names[j] for j in onnx_only]
        rows = [onnx_compare.row(names[i], onnx_names[j], outputs[j], expected[i][1], self.options.tolerances,
                                 comparison=comparison, batch=batch, histogram=histogram) for i, j in pairs]
        return rows, {names[i]: outputs[j] for i, j in pairs}

    def _parity(self) -> bool | None:
        """EG401 at the example batch. True/False: parity; None: the file could not run."""
        from evalguard.checks.onnx import compare as onnx_compare
        from evalguard.checks.onnx import runtime as onnx_runtime

        batch = self.spec.batch()
        try:
            outputs = self._run_ort(self.spec.tensors)
        except Exception as exc:  # noqa: BLE001 - FeedError or any ORT failure
            self._add("EG401", f"ONNX Runtime could not run the ONNX file on the model's example inputs: "
                               f"{onnx_runtime.short(exc)}", self._evidence(error=onnx_runtime.short(exc)))
            self._skip_all("ONNX Runtime could not run the file (EG401)")
            return None
        self.cpu_outputs = outputs
        rows, by_name = self._rows(outputs, self.expected, CPU_VS_TORCH, batch, histogram=True)
        self.info["parity"] = list(rows)
        bad = onnx_compare.failing(rows)
        self.out.ran("EG401")
        if not bad:
            return True
        if not self._deterministic():
            self.out.skip("EG401", "the eval-mode PyTorch model gives different outputs on two identical "
                                   "passes, so no file can match it (see EG102/EG103)", override=True)
            return False
        if self.options.wants("EG401"):
            explanation = self._explain(by_name)
            message = ("ONNX Runtime outputs differ from the eval-mode PyTorch model: "
                       + "; ".join(onnx_compare.describe_failure(r) for r in bad[:3])
                       + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""))
            if explanation:
                message += f". {explanation}"
            located = self._localise()
            message += f". {_where(located)}"
            evidence = self._evidence(batch=batch, outputs=rows, failing=[r["output"] for r in bad],
                                      explanation=explanation)
            evidence["first_divergent_module"] = located.get("first_divergent_module")
            if located.get("first_divergent_module_reason"):
                evidence["first_divergent_module_reason"] = located["first_divergent_module_reason"]
            evidence["localisation"] = located
            self._add("EG401", message, evidence, module=located.get("first_divergent_module"))
        return False

    def _localise(self) -> dict:
        """The first module whose ONNX output diverges (see localise.py); JSON-safe."""
        from evalguard.checks.onnx import localise as onnx_localise
        from evalguard.checks.onnx import runtime as onnx_runtime
        from evalguard.checks.onnx.export import WRAPPED
        from evalguard.facts import LocalisationFact, from_json

        located = onnx_localise.localise(
            self.model, self.spec, self.path, self.options.tolerances,
            strip_prefix=WRAPPED if self.exported else None,
            feeds=lambda session: onnx_runtime.feeds(session, self.spec.names, self.spec.tensors))
        self.info["localisation"] = from_json(LocalisationFact, located)
        return located

    def _deterministic(self) -> bool:
        from evalguard.checks.onnx import compare as onnx_compare

        again = self._reference()
        for (name, first), (_, second) in zip(self.expected, again):
            r = onnx_compare.row(name, name, second, first, self.options.tolerances, comparison="",
                                 batch=None, histogram=False)
            if not r["passed"]:
                return False
        return True

    def _explain(self, onnx_by_name) -> str | None:
        from evalguard.checks.onnx import explain as onnx_explain

        if onnx_explain.matches_training_mode(self.model, self.spec, onnx_by_name, self.options.tolerances):
            return ("The ONNX outputs match the model in training mode instead (BatchNorm using the "
                    "batch's statistics): the file was exported from a model that was not in eval mode")
        if not self.exported:
            found, checked = onnx_explain.weights_found(self.model, self.path)
            if checked and not found:
                return onnx_explain.no_weights_found_note(self.model, checked)
        return None

    def _second_batch(self, parity_ok: bool) -> None:
        """EG404: the same file at another batch size, against PyTorch at that batch size.

        The other size is one sample fewer (two for an example batch of one): any size other
        than the traced one exposes a baked-in batch size, a smaller one costs less than a
        larger one in both PyTorch and ONNX Runtime, and batch 1 is what single requests send.
        """
        from evalguard.checks.onnx import compare as onnx_compare
        from evalguard.checks.onnx import runtime as onnx_runtime

        batch = self.spec.batch()
        if batch is None:
            self.out.skip("EG404", "the model takes a list of images: the exported graph has one input per image, "
                                   "so the number of images is fixed at export and there is no batch axis to vary"
                          if self.spec.image_list else "no tensor input has a batch dimension")
            return
        second, tensors, expected, source, error = self._other_batch()
        self.info["second_batch"] = source
        if error is not None:
            self.out.skip("EG404", f"PyTorch itself fails at batch {second}: "
                                   f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}")
            return
        fixed = onnx_runtime.fixed_batch_inputs(self.session)
        try:
            outputs = self._run_ort(tensors)
        except Exception as exc:  # noqa: BLE001
            if fixed:
                dims = ", ".join(f"{name}: {dim}" for name, dim in fixed.items())
                hint = f" (fixed first dimension in the graph inputs: {dims}; export with a dynamic batch axis)"
            else:
                hint = (" (a size from the example batch was probably baked into the graph, e.g. len(x) "
                        "or int(x.shape[0]) in forward: tracing records Python ints as constants)")
            self._add("EG404", f"the ONNX file fails at batch size {second} (example batch {batch}): "
                               f"{onnx_runtime.short(exc)}{hint}",
                      self._evidence(batch=second, error=onnx_runtime.short(exc), fixed_first_dims=fixed))
            self.out.ran("EG404")
            return
        rows, _ = self._rows(outputs, expected, CPU_VS_TORCH, second, histogram=False)
        self.info["parity"] = self.info.get("parity", []) + rows
        self.out.ran("EG404")
        bad = onnx_compare.failing(rows)
        if bad and parity_ok:
            self._add("EG404", f"the ONNX file matches PyTorch at batch size {batch} but not at {second}: "
                               + "; ".join(onnx_compare.describe_failure(r) for r in bad[:3])
                               + "; a size from the example batch was probably baked into the graph "
                                 "(e.g. len(x) or int(x.shape[0]) in forward: tracing records Python "
                                 "ints as constants)",
                      self._evidence(batch=second, outputs=rows, failing=[r["output"] for r in bad]))

    def _cuda(self, parity_ok: bool) -> None:
        """EG405: ORT's CUDA provider against ORT's CPU provider and PyTorch on CUDA."""
        from evalguard.checks.onnx import compare as onnx_compare
        from evalguard.checks.onnx import cuda as onnx_cuda
        from evalguard.checks.onnx import runtime as onnx_runtime

        try:
            cuda_session = onnx_cuda.cuda_session(self.path)
            cuda_outputs = self._run_ort(self.spec.tensors, cuda_session)
        except Exception as exc:  # noqa: BLE001 - a provider that cannot load or run: say why
            self.out.skip("EG405", f"ONNX Runtime's CUDA provider could not run the file: {onnx_runtime.short(exc)}")
            return
        self.info["providers_cuda"] = list(cuda_session.get_providers())
        cpu_outputs = self.cpu_outputs
        try:
            torch_cuda = dict(onnx_cuda.torch_cuda_outputs(onnx_cuda.on_cuda(self.model), self.spec))
        except Exception as exc:  # noqa: BLE001 - e.g. out of GPU memory: still compare the providers
            torch_cuda = None
            self._note(f"PyTorch on CUDA failed, ORT CUDA compared with ORT CPU only: "
                       f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
        onnx_names = [o.name for o in self.session.get_outputs()]
        names = [n for n, _ in self.expected]
        pairs, _, _ = onnx_compare.align(names, [tuple(t.shape) for _, t in self.expected], onnx_names,
                                         [tuple(o.shape) for o in cpu_outputs])
        rows = onnx_cuda.compare_rows([names[i] for i, _ in pairs], [onnx_names[j] for _, j in pairs],
                                      [cuda_outputs[j] for _, j in pairs], [cpu_outputs[j] for _, j in pairs],
                                      None if torch_cuda is None else [torch_cuda[names[i]] for i, _ in pairs],
                                      self.options.tolerances,
                                      self.spec.batch())
        self.info["parity"] = self.info.get("parity", []) + rows
        self.out.ran("EG405")
        message = onnx_cuda.verdict(rows, parity_ok)
        if message:
            self._add("EG405", message, self._evidence(outputs=rows))

    def _backends(self, onnx_path: str | None, tmp: str) -> None:
        """EG406/EG407: every backend of --backends but onnxruntime (EG401's own) against eager
        PyTorch at the example batch and a second batch size, with median latencies; with
        --device cuda also each backend's CUDA variant against eager PyTorch on CUDA."""
        from evalguard.checks.onnx import backends as onnx_backends
        from evalguard.checks.onnx import compare as onnx_compare
        from evalguard.checks.onnx.export import FlatModel, reference
        from evalguard.facts import BackendFact

        wanted = [b for b in self.options.backends if b != onnx_backends.ONNXRUNTIME]
        if not wanted:
            return
        plan = self._variants(wanted)
        batch = self.spec.batch()
        batches = {batch: (list(self.spec.tensors), self.expected)}
        if batch is not None:
            second, tensors, expected, _, error = self._other_batch()
            if error is None:
                batches[second] = (tensors, expected)
            else:
                self._note(f"backends compared at batch {batch} only: PyTorch fails at batch {second} "
                           f"({type(error).__name__})")
        table = [BackendFact("eager", "reference", latency_ms={
            str(b): onnx_backends.median_ms(lambda t=t: reference(self.model, self.spec, t))
            for b, (t, _) in batches.items()})]
        if getattr(self, "session", None) is not None and "parity" in self.info:
            table.append(self._onnxruntime_fact(batches, onnx_backends, onnx_compare))
        flat = FlatModel(self.model, self.spec)
        for v in plan:
            if v.device == onnx_backends.CPU and v.skip_reason:   # an optional backend not installed
                table.append(BackendFact(v.backend, onnx_backends.SKIPPED, skip_reason=v.skip_reason))
            elif v.device == onnx_backends.CPU:
                with self._file_batches(v, self.model, batches, self._reference) as inputs:
                    table.append(self._variant(v, flat, inputs, onnx_path, tmp))
        cuda = [v for v in plan if v.device == onnx_backends.CUDA]
        if cuda:
            table += self._cuda_variants(cuda, batches, onnx_path, tmp)
        self.info["backends"] = table
        self.out.ran(*BACKEND_RULES)
        gap = onnx_backends.coverage_gap(table)
        if gap:   # a finding still makes the rule fail; without one it is not "passed"
            self.out.skip(BACKEND_RULES, gap, override=True)

    def _variants(self, wanted: list[str]):
        from evalguard.checks.onnx import backends as onnx_backends

        if self.options.device != onnx_backends.CUDA:
            return onnx_backends.variants(wanted, self.options.device)
        from evalguard.checks.onnx.cuda import unavailable_reason

        torch_reason = unavailable_reason(self.options.device, onnxruntime=False)
        ort_reason = None
        if torch_reason is None and onnx_backends.ORT_BACKENDS.intersection(wanted):
            ort_reason = unavailable_reason(self.options.device)
        return onnx_backends.variants(wanted, self.options.device, torch_reason, ort_reason)

    def _cuda_variants(self, plan, batches, onnx_path, tmp) -> list:
        """The CUDA variants: the model copied to the GPU, eager PyTorch on it as the reference,
        each runnable variant built and compared under exact kernels; skipped ones as rows."""
        from evalguard.checks.onnx import backends as onnx_backends
        from evalguard.checks.onnx import cuda as onnx_cuda
        from evalguard.checks.onnx.export import FlatModel
        from evalguard.checks.running import exact_kernels
        from evalguard.facts import BackendFact

        def skipped(variant, reason):
            return BackendFact(variant.backend, onnx_backends.SKIPPED, device=onnx_backends.CUDA, skip_reason=reason)

        runnable = [v for v in plan if v.skip_reason is None]
        if not runnable:
            return [skipped(v, v.skip_reason) for v in plan]
        try:
            work = onnx_cuda.on_cuda(self.model)
            expected = {b: (t, onnx_cuda.torch_cuda_outputs(work, self.spec, t)) for b, (t, _) in batches.items()}
        except Exception as exc:  # noqa: BLE001 - e.g. out of GPU memory: no reference to compare with
            reason = (f"eager PyTorch fails on CUDA: {type(exc).__name__}: "
                      f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")
            return [skipped(v, v.skip_reason or reason) for v in plan]
        table = [BackendFact("eager", "reference", device=onnx_backends.CUDA, latency_ms={
            str(b): onnx_backends.median_ms(lambda t=t: onnx_cuda.torch_cuda_outputs(work, self.spec, t))
            for b, (t, _) in expected.items()})]
        flat = FlatModel(work, self.spec)
        with exact_kernels(onnx_backends.CUDA):
            for v in plan:
                if v.skip_reason:
                    table.append(skipped(v, v.skip_reason))
                    continue
                with self._file_batches(v, work, expected,
                                        lambda t: onnx_cuda.torch_cuda_outputs(work, self.spec, t)) as inputs:
                    table.append(self._variant(v, flat, inputs, onnx_path, tmp))
        return table

    @contextlib.contextmanager
    def _file_batches(self, variant, model, batches, outputs):
        """The batches a variant is compared on. ort-optimized of a bfloat16 model runs the float32
        ONNX file: inside, ``model`` (the CPU model or its GPU copy) is converted to float32 in
        place and the batches hold float32 inputs and ``outputs`` of that float32 copy."""
        from evalguard.checks.onnx import backends as onnx_backends
        from evalguard.checks.onnx import precision

        if not self.upcast or variant.backend not in onnx_backends.ORT_BACKENDS:
            yield batches
            return
        with precision.float32_reference(model):
            converted = {}
            for b, (tensors, _) in batches.items():
                tensors = precision.float32_tensors(tensors)
                converted[b] = (tensors, outputs(tensors))
            yield converted

    def _onnxruntime_fact(self, batches, onnx_backends, onnx_compare):
        """EG401's own session as a row of the matrix: its parity rows and latencies."""
        from evalguard.facts import BackendFact

        rows = [r for r in self.info["parity"] if r.get("comparison") == CPU_VS_TORCH]
        latency = {}
        for b, (tensors, _) in batches.items():
            try:
                latency[str(b)] = onnx_backends.median_ms(lambda t=tensors: self._run_ort(t))
            except Exception as exc:  # noqa: BLE001 - e.g. a fixed batch size: EG404 says so
                self._note(f"onnxruntime not timed at batch {b}: {type(exc).__name__}")
        worst = onnx_compare.worst_abs_error(rows)
        status = "differs (EG401/EG404)" if onnx_compare.failing(rows) else "matches"
        return BackendFact("onnxruntime", status, latency_ms=latency, max_abs_diff=worst, rows=tuple(rows),
                           notes=("EG401's session: ONNX Runtime's default, all graph optimisations",))

    def _variant(self, variant, flat, batches, onnx_path, tmp):
        """Build one variant and run it at each batch size: its fact row, and EG406/EG407 findings.
        ``batches`` holds the inputs (CPU tensors) and eager PyTorch's outputs on the variant's device."""
        from evalguard.checks.onnx import backends as onnx_backends
        from evalguard.checks.onnx import compare as onnx_compare
        from evalguard.facts import BackendFact

        name, device = variant.backend, variant.device
        what = f"the {variant.label} backend"
        context = {"backend": name, "device": device}
        try:
            built = onnx_backends.build(name, flat, self.spec, onnx_path, tmp, device)
        except Exception as exc:  # noqa: BLE001 - a backend may fail to build in any way
            error = onnx_backends.build_error(exc)
            self._add("EG407", f"{what} cannot build the eval-mode model: {error}", {**context, "error": error})
            return BackendFact(name, onnx_backends.BUILD_FAILED, error=error, device=device)
        comparison = f"{variant.label} vs torch-{device}"
        rows, plain_rows, latency, failed_at = [], [], {}, None
        for b, (tensors, expected) in batches.items():
            try:
                outputs = built.run(tensors)
                plain = built.plain(tensors) if built.plain else None
            except Exception as exc:  # noqa: BLE001 - e.g. a batch size baked in at build time
                failed_at = (b, onnx_backends.build_error(exc))
                break
            rows += [(built.judge or _as_is)(onnx_compare.row(n, n, o, e, self.options.tolerances,
                                                              comparison=comparison, batch=b, histogram=False), o, e)
                     for o, (n, e) in zip(outputs, expected)]
            if plain is not None:
                plain_rows += [onnx_compare.row(n, n, o, e, self.options.tolerances,
                                                comparison=f"ort-plain vs torch-{device}", batch=b, histogram=False)
                               for o, (n, e) in zip(plain, expected)]
            latency[str(b)] = onnx_backends.median_ms(lambda t=tensors: built.run(t))
        worst = onnx_compare.worst_abs_error(rows)
        status, bad = onnx_backends.verdict(rows, plain_rows, failed_at is not None)
        eager = "eager PyTorch" + (" on CUDA" if device == onnx_backends.CUDA else "")
        if failed_at is not None:
            b, error = failed_at
            self._add("EG407", f"{what} builds but fails at batch size {b}: {error}",
                      {**context, "batch": b, "error": error})
        elif bad:
            message = (f"{what}'s outputs differ from {eager}: "
                       + "; ".join(f"{onnx_compare.describe_failure(r)} at batch {r['batch']}" for r in bad[:3])
                       + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""))
            if plain_rows:
                message += " (the same file without graph optimisations matches: a fusion changes the numerics)"
            self._add("EG406", message, onnx_compare.rounded(
                {**context, "outputs": rows + plain_rows, "failing": [r["output"] for r in bad],
                 "latency_ms": latency}))
        return BackendFact(name, status, build_seconds=built.seconds, latency_ms=latency, max_abs_diff=worst,
                           rows=tuple(rows + plain_rows), error=failed_at[1] if failed_at else None,
                           notes=tuple(built.notes), device=device)

    # -- bookkeeping ---------------------------------------------------------------------
    def _evidence(self, **extra) -> dict:
        from evalguard.checks.onnx.compare import rounded

        evidence = {"onnx_file": self.info.get("file"), "exporter": self.info.get("exporter")}
        evidence.update(extra)
        return rounded({k: v for k, v in evidence.items() if v is not None})

    def _add(self, rule: str, message: str, evidence: dict, module: str | None = None) -> None:
        if self.options.wants(rule):
            location = Location(self.location.path, module=module) if module else self.location
            self.findings.append(Finding(rule, message, location, evidence))

    def _note(self, text: str) -> None:
        self.notes.append(text)

    def _skip_all(self, reason: str, backends: bool = False) -> None:
        """Every ONNX rule not yet judged could not run, for this reason (with ``backends``,
        the backend rules too: the model itself could not be run)."""
        self.out.skip(RULES if backends else ONNX_RULES, reason)

    def _done(self) -> None:
        if self.notes:
            self.info["notes"] = self.notes
        self.out.fact(_facts(self.info))


def _as_is(row, actual, expected):
    return row


def _same_constants(a, b) -> bool:
    """True when two CallSpecs pass the same non-tensor arguments (the same objects, leaf by leaf)."""
    import torch
    import torch.utils._pytree as pytree

    def constants(spec):
        return [v for v in list(spec.args) + list(spec.kwargs.values()) if not isinstance(v, torch.Tensor)]

    mine, theirs = constants(a), constants(b)
    if len(mine) != len(theirs) or list(a.kwargs) != list(b.kwargs):
        return False
    for x, y in zip(mine, theirs):
        leaves_x, tree_x = pytree.tree_flatten(x)
        leaves_y, tree_y = pytree.tree_flatten(y)
        if tree_x != tree_y or any(p is not q for p, q in zip(leaves_x, leaves_y)):
            return False
    return True
