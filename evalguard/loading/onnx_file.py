"""ONNX targets: confirm the file parses, read its graph inputs for example inputs."""
from __future__ import annotations

from pathlib import Path

from evalguard.errors import TargetError
from evalguard.subject import AuditOptions, AuditSubject, ExampleInputs

#: onnx.TensorProto element types we can generate, as torch dtype names.
_ELEM_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16", 7: "int64", 6: "int32", 9: "bool"}
#: Size used for a dynamic (named or unknown) dimension.
DYNAMIC_DIM = 2


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


def input_specs(proto) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, shape with dynamic dims set to 2, element type) of each real graph input."""
    initializers = {init.name for init in proto.graph.initializer}
    specs = []
    for value in proto.graph.input:
        if value.name in initializers:
            continue  # old exporters list weights as inputs too
        tensor_type = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else DYNAMIC_DIM
                     for d in tensor_type.shape.dim)
        specs.append((value.name, dims, tensor_type.elem_type))
    return specs


def load_onnx_subject(path: Path, proto, options: AuditOptions) -> AuditSubject:
    from evalguard.loading import default_inputs_resolver

    vet_onnx(path, proto)
    specs = input_specs(proto)
    fallback = default_inputs_resolver(options, None, str(path))

    def resolve() -> ExampleInputs:
        if options.example_inputs_file or options.input_shapes:
            return fallback()
        from evalguard.loading.inputs import make_tensor

        args = []
        for index, (name, shape, elem) in enumerate(specs):
            dtype = _ELEM_TYPES.get(elem)
            if dtype is None:
                raise TargetError(f"cannot generate ONNX input {name!r} of element type {elem} for {path}; "
                                  "pass --example-inputs")
            args.append(make_tensor(shape, dtype, high=2, seed=options.seed + index))
        described = ", ".join(f"{n}[{'x'.join(map(str, s))}]" for n, s, _ in specs)
        return ExampleInputs(args=tuple(args), source=f"ONNX graph inputs {described} (dynamic dims = {DYNAMIC_DIM})")

    opsets = {entry.domain or "ai.onnx": entry.version for entry in proto.opset_import}
    info = {"format": "onnx", "ir_version": proto.ir_version, "opset": opsets,
            "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "graph_inputs": [f"{n}: {_ELEM_TYPES.get(e, e)}{list(s)}" for n, s, e in specs],
            "file_size": path.stat().st_size}
    from evalguard.loading.subjects import load_facts

    return AuditSubject(path=str(path), kind="onnx", onnx_path=str(path), load=load_facts(info),
                        inputs_resolver=resolve)
