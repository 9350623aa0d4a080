"""Export the eval-mode model to ONNX: flat positional inputs, flat outputs, dynamic batch axis.

Exporter choice (measured here with torch 2.13 / onnxscript 0.7.2 on 2 CPU cores): the
TorchScript exporter (``dynamo=False``) took 0.06 s for a small CNN and 0.23 s for a 2-layer
BERT where the dynamo exporter took 2.3-3.5 s and 5.4 s; on a busy machine ResNet-50 took 9 s
against 24 s and BERT-base 20 s against 43 s. Both matched eval-mode PyTorch to ~1e-6, and
dynamo prints progress to stdout. So TorchScript runs first and dynamo is the fallback: it
covers what tracing cannot export (GPT-2 in current transformers with ``use_cache=False``
uses ``aten::diff``, which the TorchScript exporter has no symbolic for).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from evalguard.checks.onnx.console import progress, quiet
from evalguard.errors import InternalError, internal_cause
from evalguard.subject import ExampleInputs
from evalguard.tensors import flatten_outputs

#: The attribute under which FlatModel holds the user's model: ONNX node names start with it.
WRAPPED = "model"
EXPORTERS = ("torchscript", "dynamo")
#: Above this many bytes of weights the ONNX protobuf limit (2 GiB) needs external data.
EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclass
class CallSpec:
    """How one forward call is built from a flat list of tensors (the ONNX graph inputs).

    Tensors among the positional and keyword arguments become graph inputs, named ``arg0``...
    or by their keyword; anything else (flags, ints, None) is baked in as a constant.
    """

    args: tuple
    kwargs: dict
    names: list[str]
    tensors: list[torch.Tensor]
    #: True when the tensors come from a positional list of tensors (a detection model's list of
    #: images): each image is its own graph input, so the number of images is fixed at export
    #: and no tensor dimension is a batch axis.
    image_list: bool = False

    @classmethod
    def of(cls, inputs: ExampleInputs) -> CallSpec:
        names, tensors, image_list = [], [], False
        for index, value in enumerate(inputs.args):
            if isinstance(value, torch.Tensor):
                names.append(f"arg{index}")
                tensors.append(value)
            elif is_tensor_list(value):
                image_list = True
                names += [f"arg{index}_{j}" for j in range(len(value))]
                tensors += list(value)
        for key, value in inputs.kwargs.items():
            if isinstance(value, torch.Tensor):
                names.append(str(key))
                tensors.append(value)
        return cls(tuple(inputs.args), dict(inputs.kwargs), names, tensors, image_list)

    def rebuild(self, tensors) -> tuple[tuple, dict]:
        """The (args, kwargs) of a forward call with ``tensors`` in the graph-input slots."""
        it = iter(tensors)

        def slot(value):
            if isinstance(value, torch.Tensor):
                return next(it)
            if is_tensor_list(value):
                return [next(it) for _ in value]
            return value

        args = tuple(slot(v) for v in self.args)
        kwargs = {k: (next(it) if isinstance(v, torch.Tensor) else v) for k, v in self.kwargs.items()}
        return args, kwargs

    def batch(self) -> int | None:
        """The first dimension shared by the tensor inputs (the first one decides); None for a
        list of images, whose length is fixed in the exported graph."""
        if self.image_list:
            return None
        for tensor in self.tensors:
            if tensor.dim() >= 1:
                return int(tensor.shape[0])
        return None

    def batched(self, tensor: torch.Tensor) -> bool:
        batch = self.batch()
        return batch is not None and tensor.dim() >= 1 and int(tensor.shape[0]) == batch

    def resized(self, new_batch: int) -> list[torch.Tensor]:
        """The tensor inputs at another batch size, by repeating samples along dim 0."""
        out = []
        for tensor in self.tensors:
            if not self.batched(tensor):
                out.append(tensor)
                continue
            reps = -(-new_batch // tensor.shape[0])
            out.append(tensor.repeat((reps,) + (1,) * (tensor.dim() - 1))[:new_batch].clone())
        return out


def is_tensor_list(value) -> bool:
    """A non-empty list/tuple of tensors passed as one argument (e.g. a detection model's images)."""
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, torch.Tensor) for v in value)


class FlatModel(nn.Module):
    """The model behind a positional-tensors-in, tuple-of-tensors-out interface.

    Both exporters then see the same signature, transformers' keyword-only inputs work with
    the TorchScript exporter, and ONNX outputs line up one to one with ``flatten_outputs``.
    """

    def __init__(self, model: nn.Module, spec: CallSpec):
        super().__init__()
        self.add_module(WRAPPED, model)
        self.spec = spec
        # A new Module starts in training mode, and the TorchScript exporter ends by calling
        # train(<the wrapper's mode>) on the whole tree: the wrapper must be in eval mode too.
        self.eval()

    def forward(self, *tensors):
        try:
            args, kwargs = self.spec.rebuild(tensors)
        except Exception as exc:  # noqa: BLE001 - evalguard's own rebuild of the call: EG900, not EG402
            raise InternalError(REFERENCE_REBUILD, exc) from exc
        output = getattr(self, WRAPPED)(*args, **kwargs)
        return tuple(tensor for _, tensor in flatten_outputs(output))


#: The step named in EG900 when evalguard's rebuild of the PyTorch reference call breaks.
REFERENCE_REBUILD = "ONNX reference rebuild"


def reference(model: nn.Module, spec: CallSpec, tensors=None) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) leaves of one eval forward pass, on fresh copies of the inputs (a forward
    may edit its inputs in place). The names match FlatModel's output order."""
    try:
        args, kwargs = spec.rebuild([t.clone() for t in (spec.tensors if tensors is None else tensors)])
    except Exception as exc:  # noqa: BLE001 - evalguard's own rebuild of the call: EG900
        raise InternalError(REFERENCE_REBUILD, exc) from exc
    with torch.no_grad():
        output = model(*args, **kwargs)          # the user's forward: what it raises is the model's
    try:
        leaves = flatten_outputs(output)
        names = unique([name for name, _ in leaves])
        return [(name, tensor.detach()) for name, (_, tensor) in zip(names, leaves)]
    except Exception as exc:  # noqa: BLE001 - evalguard's own bookkeeping: EG900
        raise InternalError(REFERENCE_REBUILD, exc) from exc


def unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}#{count}")
    return out


@dataclass
class ExportResult:
    path: str | None = None
    exporter: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)   # {"exporter", "error", "seconds"}

    @property
    def ok(self) -> bool:
        return self.path is not None

    def summary(self) -> str:
        return "; ".join(f"{a['exporter']}: {a['error']}" for a in self.attempts if a.get("error"))


def exporter_order(preferred: str = "auto") -> tuple[str, ...]:
    """``auto`` keeps the default order; naming one exporter tries it first, the other after."""
    if preferred == "auto":
        return EXPORTERS
    return (preferred,) + tuple(e for e in EXPORTERS if e != preferred)


def export(flat: FlatModel, names: list[str], outputs: list[torch.Tensor], out_names: list[str],
           path: str, label: str, validate=None, preferred: str = "auto",
           external_data: bool = False) -> ExportResult:
    """Try each exporter in turn until one writes a file that ``validate(path)`` accepts.

    ``external_data``: the weights may go to a file beside ``path`` (for a file in a private
    temporary folder). The dynamo exporter then streams each weight to disk instead of building
    the whole protobuf in memory: for BERT-base (418 MB) its peak over the loaded model fell from
    +1.4 GB to +0.3 GB. The TorchScript exporter decides this itself (only above 2 GiB).
    """
    result = ExportResult()
    for exporter in exporter_order(preferred):
        start = time.perf_counter()
        try:
            with progress(f"exporting {label} to ONNX ({exporter})"), quiet():
                try:
                    _EXPORT[exporter](flat, names, outputs, out_names, path, external_data)
                finally:
                    flat.eval()   # whatever the exporter did to the modes, later passes need eval
            if validate is not None:
                validate(path)
        except Exception as exc:  # noqa: BLE001 - an exporter may fail in any way; we try the next
            if internal_cause(exc) is not None:      # evalguard's own bug under the exporter: EG900
                raise internal_cause(exc) from exc
            result.attempts.append({"exporter": exporter, "error": shorten_error(exc),
                                    "seconds": round(time.perf_counter() - start, 3)})
            continue
        result.attempts.append({"exporter": exporter, "error": None,
                                "seconds": round(time.perf_counter() - start, 3)})
        result.path, result.exporter = path, exporter
        return result
    return result


def _dynamic_axes(flat: FlatModel, names, outputs, out_names) -> dict:
    axes = {name: {0: "batch"} for name, t in zip(names, flat.spec.tensors) if flat.spec.batched(t)}
    axes.update({name: {0: "batch"} for name, t in zip(out_names, outputs) if flat.spec.batched(t)})
    return axes


def _large(flat: FlatModel) -> bool:
    total = sum(t.numel() * t.element_size() for t in list(flat.parameters()) + list(flat.buffers()))
    return total > EXTERNAL_DATA_BYTES


def _export_torchscript(flat: FlatModel, names, outputs, out_names, path: str,
                        external_data: bool = False) -> None:
    inner = getattr(flat, WRAPPED)
    spec = flat.spec
    # A ScriptModule cannot be called from inside a trace, but this exporter takes it as is.
    # ``external_data`` is accepted for a uniform signature: this exporter writes weights to a
    # separate file only past protobuf's 2 GiB limit, whatever it is asked.
    scripted = isinstance(inner, torch.jit.ScriptModule) and not spec.kwargs \
        and all(isinstance(a, torch.Tensor) for a in spec.args)
    torch.onnx.export(inner if scripted else flat, tuple(spec.tensors), path, dynamo=False, input_names=names,
                      output_names=out_names, dynamic_axes=_dynamic_axes(flat, names, outputs, out_names),
                      external_data=_large(flat))


def _export_dynamo(flat: FlatModel, names, outputs, out_names, path: str,
                   external_data: bool = False) -> None:
    spec = flat.spec
    tensors = spec.tensors
    batch = spec.batch()
    if batch == 1:
        # torch.export specialises size-1 dimensions; trace at batch 2 so the axis stays symbolic.
        tensors = spec.resized(2)
    auto = torch.export.Dim.AUTO
    shapes = tuple({0: auto} if spec.batched(t) else None for t in spec.tensors)
    torch.onnx.export(flat, tuple(tensors), path, dynamo=True, input_names=names, output_names=out_names,
                      dynamic_shapes=(shapes,), external_data=external_data or _large(flat), verbose=False,
                      report=False)


_EXPORT = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CLASS_PREFIX = re.compile(r"^<class '(?:[\w.]*\.)?(\w+)'>:\s*")


def shorten_error(exc: BaseException, limit: int = 240) -> str:
    """The exporter's own message in one line: the cause line of dynamo's exception summary,
    else the first line of the message, prefixed with the exception's class name."""
    text = _ANSI.sub("", str(exc)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else ""
    prefix = type(exc).__name__
    if "## Exception summary" in text:
        after = text.split("## Exception summary", 1)[1]
        for candidate in after.splitlines():
            match = _CLASS_PREFIX.match(candidate.strip())
            if match:
                prefix, line = match.group(1), candidate.strip()[match.end():]
                break
    line = line.split(". Failure message", 1)[0]
    message = f"{prefix}: {line}" if line else prefix
    return message if len(message) <= limit else message[: limit - 3] + "..."
