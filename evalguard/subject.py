"""What a check receives: the loaded target (``AuditSubject``) and the run's options.

Checks read these and return a ``CheckOutcome``; they never change what the user owns (a
factory's or a live model is copied before it runs; a model the audit loaded itself runs in
place with its modes and buffers put back) and never decide severities (the engine does).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from evalguard.errors import TargetError

#: Subject kinds that carry an ``nn.Module`` (or something that runs like one).
MODEL_KINDS = frozenset({
    "full-module-pickle", "checkpoint", "state-dict", "lightning-checkpoint", "hf-folder",
    "safetensors", "torchscript", "exported-program", "factory", "live-module",
})
#: Model kinds loaded from a file by the audit itself: the audit owns that object, so checks may
#: run it in place (restoring modes and buffers) instead of paying for a deep copy.
OWNED_KINDS = MODEL_KINDS - {"factory", "live-module"}
#: Kinds read through a pickle, which the scan vets before anything is loaded (EG901/EG902).
PICKLE_KINDS = frozenset({"full-module-pickle", "checkpoint", "state-dict", "lightning-checkpoint",
                          "hf-folder"})
#: Saved programs whose ops are read statically before loading (EG904); ONNX graphs too.
PROGRAM_KINDS = frozenset({"torchscript", "exported-program", "onnx"})
#: Kinds read from a file or folder whose container is vetted first (EG905).
FILE_KINDS = (PICKLE_KINDS | PROGRAM_KINDS | {"safetensors"})
SOURCE_KINDS = frozenset({"python-source"})
ONNX_KINDS = frozenset({"onnx"})


@dataclass
class ExampleInputs:
    """Positional and keyword inputs for one forward pass, and where they came from."""

    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    #: names of the positional inputs where known (an ONNX file's graph inputs); else arg0, arg1, ...
    names: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        """Human-readable ``name: dtype[shape]`` lines for reports."""
        lines = []
        names = [self.names[i] if i < len(self.names) else f"arg{i}" for i in range(len(self.args))]
        items = list(zip(names, self.args)) + list(self.kwargs.items())
        for name, value in items:
            shape = getattr(value, "shape", None)
            dtype = str(getattr(value, "dtype", type(value).__name__)).replace("torch.", "")
            lines.append(f"{name}: {dtype}{list(shape) if shape is not None else ''}")
        return lines


@dataclass
class AuditOptions:
    """Everything the command line and ``[tool.evalguard]`` decided, already validated."""

    selected: frozenset[str] = frozenset()       # rule ids that will be reported
    seed: int = 0
    device: str = "cpu"
    input_shapes: tuple[tuple[int, ...], ...] = ()
    input_dtype: str | None = None
    example_inputs_file: str | None = None
    model_factory: str | None = None             # "pkg.mod:fn" or "path/file.py:fn"
    #: (model file, onnx file): an x.onnx found beside x.pt when a folder was walked (evalguard.planning)
    onnx_pairs: tuple[tuple[str, str], ...] = ()
    model_map: tuple[tuple[str, str], ...] = ()  # (absolute glob, spec): --model GLOB=SPEC (evalguard.planning)
    trust_modules: tuple[str, ...] = ()
    onnx_file: str | None = None                 # --onnx FILE
    onnx_enabled: bool = True                    # --no-onnx turns ONNX checks off
    keep_onnx: str | None = None                 # --keep-onnx DIR
    onnx_exporter: str = "auto"                  # auto | torchscript | dynamo: tried first
    backends: tuple[str, ...] = ("onnxruntime",)  # --backends: deployment backends compared with eager
    generate: int = 0                            # --generate N: greedy tokens per prompt (0: off)
    allow_stochastic: tuple[str, ...] = ()       # module-name globs (MC dropout)
    tolerances: Mapping[str, Any] = field(default_factory=dict)   # {"atol":..., "rtol":..., "outputs": {name: {...}}}
    exclude: tuple[str, ...] = ()                # glob patterns skipped when walking directories
    debug: bool = False                          # print tracebacks of target errors and crashed checks
    min_confidence: str = "medium"               # --min-confidence: "high" drops medium-confidence findings

    def wants(self, *rules: str) -> bool:
        """True when at least one of ``rules`` will be reported: lets checks skip work."""
        return any(rule in self.selected for rule in rules)


@dataclass(frozen=True)
class EvalReference:
    """One forward pass with every module in eval mode, under ``no_grad``, on the CPU, on
    ``inputs`` (the subject's own example inputs object): the output leaves as (name, detached
    tensor) in ``flatten_outputs`` order, and ``state_token`` of the model when it was taken.

    The eval-mode check computes this pass anyway; the ONNX check takes it as its reference
    instead of running the model again, but only while ``matches`` holds.

    ``second_batch`` is EG104's batch probe when it ran in the same eval mode: the same kind of
    pass on rows of the same inputs at another batch size (its own ``inputs`` and ``leaves``),
    which EG404 takes as its PyTorch side at that batch size."""

    inputs: ExampleInputs
    leaves: tuple
    state: tuple
    second_batch: EvalReference | None = None

    def matches(self, inputs: ExampleInputs, model: Any) -> bool:
        return self.inputs is inputs and self.state == state_token(model)


def state_token(model: Any) -> tuple:
    """Identity and in-place version of every parameter and buffer: any write to a weight or a
    buffer (``copy_``, an optimizer step, BatchNorm statistics) changes it."""
    tensors = list(model.parameters()) + list(model.buffers())
    return tuple((id(t), t._version) for t in tensors)


@dataclass
class AuditSubject:
    """One loaded target.

    ``model`` is private to the audit when it came from a file; a factory's model is the
    object the user's code built, so checks that run it must work on a copy.
    ``inputs`` are resolved lazily: only checks that run the model need them, and a run of
    static checks must not fail because no input shape could be inferred.
    """

    path: str
    kind: str
    model: Any = None
    optimizer_state: Mapping[str, Any] | None = None
    onnx_path: str | None = None
    source_text: str | None = None
    load: Any = None                      # evalguard.facts.LoadFacts: what the loader found
    inputs_resolver: Callable[[], ExampleInputs] | None = None
    #: Set when a model kind was loaded without its module (a checkpoint without --model): the
    #: checks that need the model are skipped with this reason; the others still run.
    no_model_reason: str | None = None
    #: Set by the eval-mode check (see ``EvalReference``); None until then, or when it cannot apply.
    eval_reference: EvalReference | None = None
    #: The architecture check's hooks dataflow view, recorded during the eval-mode check's second
    #: eval pass (``checks/architecture/dataflow.py::ride_along``); None when it was not.
    recorded_dataflow: Any = None
    _inputs: ExampleInputs | None = None

    @property
    def owns_model(self) -> bool:
        """True when the model was loaded from a file by the audit, not handed over by user code."""
        return self.kind in OWNED_KINDS

    @property
    def inputs(self) -> ExampleInputs:
        if self._inputs is None:
            if self.inputs_resolver is None:
                raise TargetError(
                    f"cannot infer inputs for {self.path}; pass --input-shape or --example-inputs")
            self._inputs = self.inputs_resolver()
        return self._inputs

    def input_facts(self):
        """``InputFacts`` for the inputs the checks used, or None when none were needed."""
        if self._inputs is None:
            return None
        from evalguard.facts import InputFacts

        return InputFacts(tuple(self._inputs.describe()), self._inputs.source)
