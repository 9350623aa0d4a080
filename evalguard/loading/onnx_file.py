"""ONNX files, as targets and as `--onnx FILE`: check the file parses; example inputs from its graph."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evalguard.errors import TargetError
from evalguard.subject import AuditOptions, AuditSubject, ExampleInputs

#: onnx.TensorProto element types we can generate, as torch dtype names.
_ELEM_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16", 7: "int64", 6: "int32", 9: "bool"}
#: Size of a dynamic (named or unknown) first dimension: the batch.
DYNAMIC_BATCH = 2
#: Size of any other dynamic dimension (a sequence length, an image side) with nothing better to go on.
DYNAMIC_OTHER = 16


def read_onnx(path: Path):
    """The ModelProto without external weights; ``None`` when the bytes are not ONNX."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError and others on foreign bytes
        return None
    if proto.ir_version <= 0 or not proto.HasField("graph") or not (proto.graph.node or proto.graph.input):
        return None
    return proto


#: Domains whose ops onnxruntime implements itself; anything else needs a custom-op library.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training"})


def vet_onnx(path: Path, proto) -> None:
    """External data must stay inside the model's folder (EG905); custom-domain ops are refused (EG904)."""
    from evalguard.errors import RefusedTarget
    from evalguard.loading.safe_load import refuse_container, unsafe_op_finding

    folder = Path(path).resolve().parent
    local = {f.domain for f in proto.functions}
    custom = []
    for tensor in _tensors(proto):
        if tensor.data_location != 1:  # TensorProto.EXTERNAL
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise refuse_container(path, f"external data of tensor {tensor.name[:60]!r} points outside the "
                                         f"model's folder ({location[:100]!r})", kind="onnx")
    for node in _nodes(proto):
        if node.domain not in STANDARD_DOMAINS and node.domain not in local:
            custom.append(f"{node.domain}::{node.op_type} (node {node.name[:60] or '?'})")
    if custom:
        custom = list(dict.fromkeys(custom))
        raise RefusedTarget(f"{path}: not loaded: custom-domain operators", [unsafe_op_finding(path, custom)],
                            kind="onnx")


def _nodes(proto):
    pending = [proto.graph, *[f for f in proto.functions]]
    while pending:
        graph = pending.pop()
        for node in graph.node:
            yield node
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    pending.append(attribute.g)
                pending.extend(attribute.graphs)


def _tensors(proto):
    yield from proto.graph.initializer
    for node in _nodes(proto):
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
    pending = [proto.graph]
    while pending:
        graph = pending.pop()
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    yield from attribute.g.initializer
                    pending.append(attribute.g)


@dataclass(frozen=True)
class GraphInput:
    name: str
    dims: tuple[int | str | None, ...]      # a fixed size, a symbolic name, or None (unknown)
    elem: int                               # onnx.TensorProto element type

    @property
    def dtype(self) -> str | None:
        return _ELEM_TYPES.get(self.elem)


def graph_inputs(proto) -> list[GraphInput]:
    """The real graph inputs (not the initializers old exporters list as inputs too)."""
    initializers = {init.name for init in proto.graph.initializer}
    found = []
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                     else (d.dim_param or None) for d in tensor_type.shape.dim)
        found.append(GraphInput(value.name, dims, tensor_type.elem_type))
    return found


def input_specs(proto) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, shape with dynamic dims resolved without a hint, element type) of each graph input."""
    return [(gi.name, _resolve(gi.dims, None)[0], gi.elem) for gi in graph_inputs(proto)]


def _resolve(dims, hint_shape) -> tuple[tuple[int, ...], list[str]]:
    """Fixed dims as they are; a dynamic one from the hint (same rank), else batch 2 / other 16."""
    shape, notes = [], []
    for index, dim in enumerate(dims):
        if isinstance(dim, int):
            shape.append(dim)
            continue
        if hint_shape is not None and len(hint_shape) == len(dims):
            size, why = int(hint_shape[index]), "from the model"
        else:
            size, why = (DYNAMIC_BATCH, "batch") if index == 0 else (DYNAMIC_OTHER, "default")
        shape.append(size)
        notes.append(f"{dim or f'dim {index}'}={size} ({why})")
    return tuple(shape), notes


def onnx_example_inputs(path, proto, options: AuditOptions, hint: ExampleInputs | None = None) -> ExampleInputs:
    """Example inputs shaped and typed as the ONNX file's graph inputs say, in graph order.

    Dynamic dimensions take the size of the model's own inferred input when there is one of
    the same rank (``hint``), else 2 for the first (batch) and 16 for the others; ``--input-dtype``
    wins over the file's element types. The source names the file and every resolved dim.
    """
    from evalguard.loading.inputs import make_tensor

    hints = list(hint.args) if hint is not None else []
    specs = list(graph_inputs(proto))
    # keyword inputs (transformers models): the file's inputs carry the keywords' names
    keyword = hint is not None and bool(hint.kwargs) and all(gi.name in hint.kwargs for gi in specs)
    if keyword:
        hints = [hint.kwargs[gi.name] for gi in specs]
    args, described, notes = [], [], []
    for index, gi in enumerate(specs):
        dtype = options.input_dtype or gi.dtype
        if dtype is None:
            raise TargetError(f"cannot generate ONNX input {gi.name!r} of element type {gi.elem} for {path}; "
                              "pass --example-inputs")
        like = hints[index] if index < len(hints) and hasattr(hints[index], "shape") else None
        shape, resolved = _resolve(gi.dims, tuple(like.shape) if like is not None else None)
        if like is not None and tuple(like.shape) == shape and str(like.dtype).removeprefix("torch.") == dtype:
            args.append(like)         # the model's own input (e.g. token ids within its vocabulary)
        else:
            args.append(make_tensor(shape, dtype, high=2, seed=options.seed + index))
        described.append(f"{gi.name}: {dtype}[{'x'.join(map(str, shape))}]")
        notes += [f"{gi.name} {note}" for note in resolved]
    source = f"graph inputs of {path}: {', '.join(described)}"
    if notes:
        source += f" (dynamic dims: {', '.join(notes)})"
    if options.input_dtype:
        source += f" (--input-dtype {options.input_dtype})"
    names = tuple(gi.name for gi in graph_inputs(proto))
    if keyword:
        return ExampleInputs(kwargs={gi.name: value for gi, value in zip(specs, args)}, source=source, names=names)
    return ExampleInputs(args=tuple(args), source=source, names=names)


def onnx_inputs_for(onnx_file: str, options: AuditOptions, hint: ExampleInputs | None = None) -> ExampleInputs:
    """Inputs for a model compared with ``--onnx FILE``: the file says what it takes."""
    proto = read_onnx(Path(onnx_file))
    if proto is None:
        raise TargetError(f"--onnx: {onnx_file} is not a valid ONNX model; pass --input-shape or --example-inputs")
    return onnx_example_inputs(onnx_file, proto, options, hint)


def load_onnx_subject(path: Path, proto, options: AuditOptions) -> AuditSubject:
    from evalguard.loading import default_inputs_resolver

    vet_onnx(path, proto)
    specs = input_specs(proto)
    fallback = default_inputs_resolver(options, None, str(path))

    def resolve() -> ExampleInputs:
        if options.example_inputs_file or options.input_shapes:
            return fallback()
        return onnx_example_inputs(path, proto, options)

    opsets = {entry.domain or "ai.onnx": entry.version for entry in proto.opset_import}
    info = {"format": "onnx", "ir_version": proto.ir_version, "opset": opsets,
            "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "graph_inputs": [f"{n}: {_ELEM_TYPES.get(e, e)}{list(s)}" for n, s, e in specs],
            "file_size": path.stat().st_size}
    from evalguard.loading.subjects import load_facts

    return AuditSubject(path=str(path), kind="onnx", onnx_path=str(path), load=load_facts(info),
                        inputs_resolver=resolve)
