"""EG201 in source: an ``nn.Sequential(...)`` literal where a Dropout feeds a BatchNorm.

Only literal layer lists are read (positional modules, or an ``OrderedDict`` of
``(name, module)`` pairs); nested ``nn.Sequential`` literals are flattened. What may stand
between the two is the same as for the dataflow rule (``arch_flow``), after Li et al. (CVPR
2019): element-wise activations, Identity and Flatten pass the dropped-out activations through,
and a linear or convolution layer (or pooling) carries the variance shift on to the BatchNorm
after it. Any other layer (a LayerNorm, say) ends the chain. A Dropout with ``p=0`` is ignored.
"""
from __future__ import annotations

import ast
from typing import Iterator

from evalguard.checks.source.index import FileIndex, Hit, Scope, argument, calls_in, spelled

SEQUENTIAL = "torch.nn.Sequential"
ORDERED_DICT = {"collections.OrderedDict", "OrderedDict", "typing.OrderedDict"}
DROPOUTS = {f"torch.nn.{n}" for n in ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
                                      "FeatureAlphaDropout")}
BATCHNORMS = {f"torch.nn.{n}" for n in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm",
                                        "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d")}
PASS_THROUGH = {f"torch.nn.{n}" for n in (
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish",
    "Tanh", "Sigmoid", "Hardtanh", "Hardswish", "Hardsigmoid", "Softplus", "Softsign", "Tanhshrink",
    "LogSigmoid", "Identity", "Flatten",
    # weight layers and pooling carry the shift on (the paper's Dropout -> weight layer -> BN case)
    "Linear", "LazyLinear", "Bilinear", "Conv1d", "Conv2d", "Conv3d", "LazyConv1d", "LazyConv2d", "LazyConv3d",
    "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "MaxPool1d", "MaxPool2d", "MaxPool3d",
    "AvgPool1d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d")}


def check(index: FileIndex) -> Iterator[Hit]:
    nested = set()
    for scope, call in calls_in(index):
        if id(call) in nested or index.qualname(call.func) != SEQUENTIAL:
            continue
        layers = _layers(index, call, nested)
        for i, layer in enumerate(layers):
            if _name(index, layer) not in DROPOUTS or _dropout_is_off(index, scope, layer):
                continue
            for follower in layers[i + 1:]:
                name = _name(index, follower)
                if name in BATCHNORMS:
                    yield Hit("EG201", layer, (
                        f"{spelled(layer)} feeds {spelled(follower)} in this nn.Sequential: BatchNorm "
                        "learns statistics of dropped-out activations in training and sees different "
                        "ones at inference (variance shift); move the Dropout after the BatchNorm "
                        "(and its activation)"),
                        {"dropout": spelled(layer), "batchnorm": spelled(follower),
                         "batchnorm_line": follower.lineno})
                if name not in PASS_THROUGH:
                    break


def _name(index: FileIndex, node: ast.AST) -> str | None:
    return index.qualname(node.func) if isinstance(node, ast.Call) else None


def _layers(index: FileIndex, call: ast.Call, nested: set) -> list[ast.AST]:
    """The modules of a Sequential literal, in order, nested Sequential literals inlined."""
    items: list[ast.AST] = []
    if len(call.args) == 1 and isinstance(call.args[0], ast.Call) and _name(index, call.args[0]) in ORDERED_DICT:
        pairs = call.args[0].args[0] if call.args[0].args else None
        if isinstance(pairs, (ast.List, ast.Tuple)):
            items = [p.elts[1] for p in pairs.elts if isinstance(p, ast.Tuple) and len(p.elts) == 2]
    else:
        items = [a for a in call.args if not isinstance(a, ast.Starred)]
        if len(items) != len(call.args):   # *layers: the order around it is unknown
            return []
    layers: list[ast.AST] = []
    for item in items:
        if isinstance(item, ast.Call) and _name(index, item) == SEQUENTIAL:
            nested.add(id(item))
            layers.extend(_layers(index, item, nested))
        else:
            layers.append(item)
    return layers


def _dropout_is_off(index: FileIndex, scope: Scope, call: ast.Call) -> bool:
    p = argument(index, scope, call, "p", 0)
    return p is not None and index.value(p, scope) == 0
