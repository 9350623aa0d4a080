"""Static reading of an ONNX graph: training-mode Dropout/BatchNormalization, fixed batch dims.

Checked on the graph itself because ONNX Runtime's optimiser removes a Dropout node even when
its ``training_mode`` input is a constant true, so running the file hides what it says.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Iterator

#: The ops that behave differently in training mode, and where that mode is written.
TRAINING_OPS = ("Dropout", "BatchNormalization")


@dataclass(frozen=True)
class TrainingOp:
    op_type: str
    node: str          # the ONNX node name
    module: str | None  # the PyTorch module it came from, when the exporter recorded it
    detail: str


def load(path: str):
    """The graph without external weights: the static checks need structure and scalars only."""
    import onnx

    return onnx.load(path, load_external_data=False)


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
