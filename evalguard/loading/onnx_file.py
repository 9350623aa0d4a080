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
