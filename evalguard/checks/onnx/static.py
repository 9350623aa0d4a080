"""Static reading of an ONNX graph: training-mode Dropout/BatchNormalization, fixed batch dims.

Checked on the graph itself because ONNX Runtime's optimiser removes a Dropout node even when
its ``training_mode`` input is a constant true, so running the file hides what it says.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

#: The ops that behave differently in training mode, and where that mode is written.
TRAINING_OPS = ("Dropout", "BatchNormalization")


@dataclass(frozen=True)
class TrainingOp:
    op_type: str
    node: str          # the ONNX node name
    module: str | None  # the PyTorch module it came from, when the exporter recorded it
    detail: str


#: Files above this size are read without the data of their large initializers.
LEAN_BYTES = 64 * 1024 * 1024


def load(path: str):
    """The graph without weights: the static checks need structure and scalars only.

    External data is never read. In a large single-file model the data of initializers with
    more than 4 elements (which no static check reads) is skipped too: ``onnx.load`` holds the
    file's bytes and the parsed copy at once, +780 MB for BERT-base on top of the live session.
    """
    import os

    import onnx

    if os.path.getsize(path) <= LEAN_BYTES:
        return onnx.load(path, load_external_data=False)
    try:
        return onnx.ModelProto.FromString(_lean_bytes(path))
    except Exception:  # noqa: BLE001 - not a wire format we can walk: let onnx say what is wrong
        return onnx.load(path, load_external_data=False)


# Protobuf field numbers: ModelProto.graph, GraphProto.initializer, TensorProto.dims and the
# TensorProto fields that hold data (float, int32, string, int64, raw, double, uint64).
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_DIMS = 7, 5, 1
_TENSOR_DATA = frozenset({4, 5, 6, 7, 9, 10, 11})


def _lean_bytes(path: str) -> bytes:
    """The ModelProto's bytes with the data fields of big top-level initializers left out,
    read through mmap so that the skipped data is never paged in."""
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        out = bytearray()
        for number, start, body, end in _fields(buf, 0, len(buf)):
            if number == _MODEL_GRAPH and buf[start] & 7 == 2:
                graph = bytearray()
                for g_number, g_start, g_body, g_end in _fields(buf, body, end):
                    if g_number == _GRAPH_INITIALIZER and buf[g_start] & 7 == 2 and g_end - g_body > 1024:
                        graph += _lean_tensor(buf, g_start, g_body, g_end)
                    else:
                        graph += buf[g_start:g_end]
                out += _submessage(number, graph)
            else:
                out += buf[start:end]
        return bytes(out)


def _lean_tensor(buf, start: int, body: int, end: int) -> bytes:
    """A TensorProto field without its data fields, unless it has at most 4 elements."""
    kept = bytearray()
    numel = 1
    for number, f_start, f_body, f_end in _fields(buf, body, end):
        if number == _TENSOR_DIMS:
            numel *= _dims_product(buf, f_start, f_body, f_end)
        if number not in _TENSOR_DATA:
            kept += buf[f_start:f_end]
    if numel <= 4:   # a scalar or tiny tensor the checks may read: keep it whole
        return bytes(buf[start:end])
    return _submessage(_GRAPH_INITIALIZER, kept)


def _submessage(number: int, payload) -> bytes:
    return _varint_bytes(number << 3 | 2) + _varint_bytes(len(payload)) + bytes(payload)


def _dims_product(buf, start: int, body: int, end: int) -> int:
    wire = buf[start] & 7
    if wire == 0:   # one unpacked dim
        return _varint(buf, body)[0]
    product, pos = 1, body
    while pos < end:   # packed dims
        value, pos = _varint(buf, pos)
        product *= value
    return product


def _fields(buf, pos: int, end: int):
    """(field number, field start, payload start, field end) for each field in buf[pos:end]."""
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, after = _varint(buf, pos)
            yield number, start, pos, after
            pos = after
        elif wire == 1:
            yield number, start, pos, pos + 8
            pos += 8
        elif wire == 2:
            length, body = _varint(buf, pos)
            yield number, start, body, body + length
            pos = body + length
        elif wire == 5:
            yield number, start, pos, pos + 4
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if pos != end:
        raise ValueError("truncated protobuf field")


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def training_mode_ops(proto, strip_prefix: str | None = None) -> list[TrainingOp]:
    """Dropout nodes whose ``training_mode`` input is a constant true (ratio not 0), and
    BatchNormalization nodes with ``training_mode=1`` (``is_test=0`` before opset 7)."""
    found = []
    for graph_constants, node in _walk(proto):
        if node.domain not in ("", "ai.onnx") or node.op_type not in TRAINING_OPS:
            continue
        detail = _training_detail(node, graph_constants)
        if detail:
            found.append(TrainingOp(node.op_type, node.name, node_module(node, strip_prefix), detail))
    return found


def _training_detail(node, constants) -> str | None:
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "BatchNormalization":
        if "training_mode" in attrs and attrs["training_mode"].i == 1:
            return "attribute training_mode=1: normalises with the batch's own statistics"
        if "is_test" in attrs and attrs["is_test"].i == 0:
            return "attribute is_test=0: normalises with the batch's own statistics"
        return None
    # Dropout: opset >= 12 takes training_mode as its third input; before opset 7, is_test.
    if "is_test" in attrs and attrs["is_test"].i == 0:
        return "attribute is_test=0: drops activations at inference"
    if len(node.input) < 3 or not node.input[2]:
        return None
    mode = constants.get(node.input[2])
    if mode is None or not bool(mode.reshape(-1)[0]):
        return None
    ratio = constants.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    if ratio is not None and float(ratio.reshape(-1)[0]) == 0.0:
        return None   # a no-op however it runs
    ratio_text = f" with ratio {float(ratio.reshape(-1)[0]):g}" if ratio is not None else ""
    return f"training_mode input is a constant true{ratio_text}: drops activations at inference"


def _walk(proto) -> Iterator[tuple[dict, object]]:
    """(constants visible to the node, node) for every node, in subgraphs and functions too."""
    yield from _walk_graph(proto.graph, {})
    for function in proto.functions:
        constants = {}
        for node in function.node:
            constants.update(_node_constants(node))
        for node in function.node:
            yield constants, node


def _walk_graph(graph, outer: dict) -> Iterator[tuple[dict, object]]:
    from onnx import AttributeProto

    constants = dict(outer)
    constants.update(_initializers(graph))
    for node in graph.node:
        constants.update(_node_constants(node))
    for node in graph.node:
        yield constants, node
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from _walk_graph(attr.g, constants)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _walk_graph(sub, constants)


def _initializers(graph) -> dict:
    from onnx import numpy_helper

    out = {}
    for init in graph.initializer:
        # Only scalars and tiny tensors matter here; skip weights (and external data).
        if _numel(init.dims) <= 4 and not init.external_data:
            out[init.name] = numpy_helper.to_array(init)
    return out


def _node_constants(node) -> dict:
    import numpy as np
    from onnx import numpy_helper

    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or not node.output:
        return {}
    for attr in node.attribute:
        if attr.name == "value" and _numel(attr.t.dims) <= 4:
            return {node.output[0]: numpy_helper.to_array(attr.t)}
        if attr.name == "value_int":
            return {node.output[0]: np.array(attr.i)}
        if attr.name == "value_float":
            return {node.output[0]: np.array(attr.f)}
        if attr.name == "value_ints":
            return {node.output[0]: np.array(list(attr.ints))}
    return {}


def _numel(dims) -> int:
    total = 1
    for d in dims:
        total *= d
    return total


def node_module(node, strip_prefix: str | None = None) -> str | None:
    """The PyTorch module path a node came from: dynamo records it in metadata
    (``pkg.torch.onnx.name_scopes``), the TorchScript exporter in the node name
    (``/encoder/layer.0/attention/output/dropout/Dropout``)."""
    path = None
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                continue
            # Cumulative paths ['', 'encoder', 'encoder.layer.0', ..., 'aten_op_name'].
            inner = [s for s in scopes[:-1] if s]
            path = inner[-1] if inner else None
            break
    if path is None and node.name.startswith("/"):
        path = _scope_path([p for p in node.name.split("/")[1:-1] if p])
    if path and strip_prefix:
        if path == strip_prefix:
            return None
        path = path.removeprefix(strip_prefix + ".")
    return path


def _scope_path(components: list[str]) -> str | None:
    """TorchScript scope names qualify children of containers with the container's name
    (``/layers.0/inner/inner.1/Dropout`` is ``layers.0.inner.1``): such a component replaces
    the one before it instead of extending it."""
    path: list[str] = []
    for component in components:
        if path and component.startswith(path[-1] + "."):
            path[-1] = component
        else:
            path.append(component)
    return ".".join(path) or None


def fixed_batch_inputs(proto) -> dict[str, int]:
    """Graph inputs (not initializers) whose first dimension is a fixed number."""
    initializers = {init.name for init in proto.graph.initializer}
    fixed = {}
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            fixed[value.name] = int(dims[0].dim_value)
    return fixed


def opsets(proto) -> dict[str, int]:
    return {entry.domain or "ai.onnx": entry.version for entry in proto.opset_import}
