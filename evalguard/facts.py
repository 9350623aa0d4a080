"""Typed facts: what the loader and each check family learned about a target, whether or
not a rule fired. Reporters read these (the HTML mode table, the ONNX parity table, what was
loaded and with which inputs); nothing else carries facts, so a reporter never guesses at keys.

Each class is a frozen dataclass with a ``family`` name (its key in ``TargetResult.facts`` and
in the JSON report) and converts to and from plain JSON (``evalguard merge`` reads reports
back). Nothing here imports torch.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

#: How the JSON report writes a non-finite float (JSON has no NaN or Infinity); read back by
#: ``number``. Everywhere else (checks, facts, the text and HTML reports) they are real floats.
NON_FINITE_TEXT = ("nan", "inf", "-inf")


def number(value) -> float | None:
    """A float from a fact value: a real number, or the JSON report's text for a non-finite one
    (a merged or re-read report); None for anything else (missing, bool)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.lower() in NON_FINITE_TEXT:
        return float(value)
    return None


def worst_abs_error(rows) -> float | None:
    """The largest ``max_abs_diff`` of ONNX parity rows; NaN when any row's is NaN (a NaN output
    is the worst disagreement there is). Every report reads the worst error through this."""
    worst = None
    for row in rows:
        value = number(row.get("max_abs_diff"))
        if value is None:
            continue
        if worst is None or value != value or (worst == worst and value > worst):
            worst = value
    return worst


def to_json(fact) -> dict:
    from evalguard.jsonvalues import jsonable

    return jsonable(dataclasses.asdict(fact))


def _convert(hint, value):
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        for arg in args:
            if arg is type(None):
                continue
            return _convert(arg, value)
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_json(hint, value)
    if origin is tuple and isinstance(value, (list, tuple)):
        item = args[0] if args else Any
        return tuple(_convert(item, v) for v in value)
    return value


def from_json(cls, data: Mapping):
    """Rebuild a facts dataclass from ``to_json`` output (unknown keys are ignored)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)


# --------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class WeightsFacts:
    """How a state_dict met the architecture it was loaded into."""

    architecture: str = ""                  # "--model pkg:fn", "transformers BertModel", ...
    loaded: int = 0
    expected: int = 0                       # parameters + persistent buffers of the architecture
    missing: tuple[str, ...] = ()           # first names (counts are exact)
    missing_count: int = 0
    unexpected: tuple[str, ...] = ()
    unexpected_count: int = 0
    stripped_prefix: str | None = None
    renamed: int = 0                        # keys renamed by the architecture's own library


@dataclass(frozen=True)
class OptimizerHint:
    """Where the loader found optimizer state, and the class name if the file names one."""

    location: str
    name: str | None = None
    name_source: str | None = None          # "named in the checkpoint" | "inferred from param_groups"
    count: int = 1


@dataclass(frozen=True)
class LoadFacts:
    family: ClassVar[str] = "load"

    format: str
    model_class: str | None = None
    saved_training: bool | None = None      # the model's mode as saved / as the factory returned it
    mode_source: str | None = None          # "file", "--model factory", ...
    file_size: int | None = None
    parameters: int | None = None           # parameter elements of the model as loaded
    parameter_bytes: int | None = None      # their size in memory (parameters and buffers)
    weights: WeightsFacts | None = None
    optimizer: OptimizerHint | None = None
    details: tuple[tuple[str, str], ...] = ()   # (label, value) lines about the file's layout


@dataclass(frozen=True)
class InputFacts:
    family: ClassVar[str] = "inputs"

    inputs: tuple[str, ...]                 # "name: dtype[shape]"
    source: str                             # where they came from


# --------------------------------------------------------------------------- eval mode
@dataclass(frozen=True)
class ModeRowFact:
    module: str
    type: str
    mode: str                               # "train" | "eval"
    behaviour_differs: bool
    reason: str = ""
    allowed: bool = False


@dataclass(frozen=True)
class PairedForwardFacts:
    copy: str
    passes: int
    seed: int
    served_mode: str
    tolerance: Mapping[str, Any]
    batch_tolerance: Mapping[str, Any]
    batch_probe: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModeFacts:
    family: ClassVar[str] = "eval_mode"

    rows: tuple[ModeRowFact, ...]
    omitted: int
    modules: int
    in_training: int
    behaviour_differs: int
    behaviour_differs_in_training: int
    root_training: bool
    mode_fixed: bool
    paired: PairedForwardFacts | None = None


# --------------------------------------------------------------------------- architecture
@dataclass(frozen=True)
class ArchitectureFacts:
    family: ClassVar[str] = "architecture"

    dataflow: str                           # "fx" | "hooks" | "unavailable" | "not needed"
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- optimizer
@dataclass(frozen=True)
class OptimizerGroupFact:
    index: int
    optimizer: str
    weight_decay: float
    params: int
    decoupled_weight_decay: bool | None
    basis: str


@dataclass(frozen=True)
class OptimizerStateFact:
    index: int
    groups: tuple[OptimizerGroupFact, ...]
    class_hint: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class OptimizerFacts:
    family: ClassVar[str] = "optimizer"

    optimizers: tuple[OptimizerStateFact, ...] = ()
    note: str | None = None


# --------------------------------------------------------------------------- ONNX
@dataclass(frozen=True)
class DivergenceStep:
    """One module on the path from the root to the first divergent module."""

    module: str
    type: str | None = None
    status: str = "not compared"            # "matches" | "diverges" | "not compared"
    max_abs_error: float | str | None = None


@dataclass(frozen=True)
class LocalisationFact:
    """Where an ONNX mismatch starts (checks/onnx/localise.py); the same keys as EG401's evidence."""

    first_divergent_module: str | None = None
    first_divergent_module_reason: str | None = None   # why there is no module, or where instead
    module_type: str | None = None
    path: tuple[DivergenceStep, ...] = ()   # outermost first, ending at the divergent module
    output_max_abs_error: float | str | None = None
    input_max_abs_error: float | str | None = None
    inputs_match: bool | None = None
    onnx_nodes: tuple[Mapping[str, str], ...] = ()   # {"name", "op_type"}, the first few
    onnx_node_count: int = 0
    folded: tuple[str, ...] = ()            # node-less modules the exporter folded into it
    compared_output: str | None = None      # the module output that diverged first, when it differs
    mapped_by: str | None = None            # which exporter metadata mapped nodes to modules
    modules_compared: int = 0
    note: str | None = None


@dataclass(frozen=True)
class BackendFact:
    """One row of the backend matrix (--backends): a backend against eager PyTorch."""

    backend: str                            # "eager" (the reference), "torchscript", "torch-compile", ...
    #: "reference" | "matches" | "differs" | "file differs (EG401)" | "build failed" | "run failed" | "skipped"
    status: str
    build_seconds: float | None = None
    latency_ms: Mapping[str, float] = dataclasses.field(default_factory=dict)   # batch size -> median ms
    max_abs_diff: float | str | None = None
    rows: tuple[Mapping[str, Any], ...] = ()   # parity rows (checks/onnx/compare.row) per output and batch
    error: str | None = None
    notes: tuple[str, ...] = ()
    #: Where the backend ran: "cpu", or "cuda" for the CUDA variants of --device cuda (each
    #: compared with the "eager" row of the same device). A backend is one row per device.
    device: str = "cpu"
    skip_reason: str | None = None          # status "skipped": why this variant could not run here


@dataclass(frozen=True)
class OnnxFacts:
    family: ClassVar[str] = "onnx"

    exporter: str | None = None             # "torchscript", "dynamo", "user file"
    exporters_tried: tuple[Mapping[str, Any], ...] = ()
    file: str | None = None                 # a file that outlives the audit (--onnx, --keep-onnx)
    opset: Mapping[str, int] = dataclasses.field(default_factory=dict)
    providers: tuple[str, ...] = ()
    providers_cuda: tuple[str, ...] = ()
    #: one row per output and comparison (see checks/onnx/compare.row for the keys)
    parity: tuple[Mapping[str, Any], ...] = ()
    fixed_first_dims: Mapping[str, int] = dataclasses.field(default_factory=dict)
    second_batch: str | None = None         # the inputs at the second batch size (EG404), in words
    outputs_not_in_file: tuple[str, ...] = ()
    outputs_not_in_model: tuple[str, ...] = ()
    localisation: LocalisationFact | None = None   # only after an EG401 mismatch
    backends: tuple[BackendFact, ...] = ()  # the backend matrix, eager first (--backends)
    notes: tuple[str, ...] = ()


#: family name -> class, for reading reports back
FACT_TYPES = {cls.family: cls for cls in (LoadFacts, InputFacts, ModeFacts, ArchitectureFacts,
                                           OptimizerFacts, OnnxFacts)}


def _register_family_facts() -> None:
    """Facts a family package declares itself (the generation family's), read back by merge."""
    from evalguard.checks.generation.facts import GenerationFacts

    FACT_TYPES[GenerationFacts.family] = GenerationFacts


_register_family_facts()
