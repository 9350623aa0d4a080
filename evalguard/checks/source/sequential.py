"""EG201 in source: a Dropout that feeds a BatchNorm, in three shapes read from the AST.

1. ``nn.Sequential(...)`` literals (below).
2. Layer lists built step by step: ``layers.append(nn.Dropout(p))`` then ``layers.append(nn.BatchNorm1d(n))``
   (also ``extend``/``+=``/``add_module``, inside loops and ifs), in source order. Order across loop
   iterations is not followed: a Dropout appended last in one iteration and a BatchNorm first in the next
   are not paired (the loop may run once, and the last layer is often special-cased).
3. A ``forward`` that applies ``self.<dropout>`` and then ``self.<batchnorm>`` to its output, straight-line
   (top-level statements), with submodule types read from ``self.<name> = nn.X(...)`` in the class.

For literals, only literal layer lists are read (positional modules, or an ``OrderedDict`` of
``(name, module)`` pairs); nested ``nn.Sequential`` literals are flattened. What may stand
between the two is the same as for the dataflow rule (``arch_flow``), after Li et al. (CVPR
2019): element-wise activations, Identity and Flatten pass the dropped-out activations through,
and a linear or convolution layer (or pooling) carries the variance shift on to the BatchNorm
after it. Any other layer (a LayerNorm, say) ends the chain. A Dropout with ``p=0`` is ignored.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator

from evalguard.checks.source.index import (
    FileIndex,
    Hit,
    Scope,
    argument,
    calls_in,
    spelled,
)

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
    yield from _literals(index)
    for scope in index.scopes:
        for layers in _built_lists(index, scope).values():
            yield from _chains(index, scope, layers, "this layer list")
        if scope.name == "forward" and scope.cls is not None and not scope.is_class_body:
            yield from _forward(index, scope)


def _literals(index: FileIndex) -> Iterator[Hit]:
    nested = set()
    for scope, call in calls_in(index):
        if id(call) in nested or index.qualname(call.func) != SEQUENTIAL:
            continue
        yield from _chains(index, scope, _layers(index, call, nested), "this nn.Sequential")


def _chains(index: FileIndex, scope: Scope, layers: list[ast.AST], where: str,
            names: dict | None = None) -> Iterator[Hit]:
    """Every Dropout in ``layers`` that reaches a BatchNorm through pass-through layers only."""
    kind = (lambda node: names.get(id(node))) if names is not None else (lambda node: _name(index, node))
    for i, layer in enumerate(layers):
        if kind(layer) not in DROPOUTS or (names is None and _dropout_is_off(index, scope, layer)):
            continue
        for follower in layers[i + 1:]:
            name = kind(follower)
            if name in BATCHNORMS:
                yield Hit("EG201", layer, (
                        f"{spelled(layer)} feeds {spelled(follower)} in {where}: BatchNorm "
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


# -- layer lists built step by step ---------------------------------------------------------

def _target(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


def _built_lists(index: FileIndex, scope: Scope) -> dict[str, list[ast.AST]]:
    """name -> layers appended to it in this scope, in source order (only lists that get a Dropout)."""
    lists: dict[str, list[ast.AST]] = {}
    for node in scope.nodes():
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            name, method = _target(node.func.value), node.func.attr
            if name is None:
                continue
            if method == "append":
                lists.setdefault(name, []).append(node.args[0])
            elif method == "add_module" and len(node.args) == 2:
                lists.setdefault(name, []).append(node.args[1])
            elif method == "extend" and isinstance(node.args[0], (ast.List, ast.Tuple)):
                lists.setdefault(name, []).extend(node.args[0].elts)
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add) \
                and isinstance(node.value, (ast.List, ast.Tuple)) and _target(node.target):
            lists.setdefault(_target(node.target), []).extend(node.value.elts)
    return {k: v for k, v in lists.items() if any(_name(index, layer) in DROPOUTS for layer in v)}


# -- straight-line forward ------------------------------------------------------------------

def _submodule_types(index: FileIndex, cls: ast.ClassDef) -> dict[str, str]:
    """self.<attr> -> torch.nn class name, from ``self.<attr> = nn.X(...)`` anywhere in the class."""
    types: dict[str, str] = {}
    for node in ast.walk(cls):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            name = _name(index, node.value)
            for target in node.targets:
                if name and isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    previous = types.get(target.attr)
                    types[target.attr] = name if previous in (None, name) else "?"   # reassigned: unknown
    return types


def _forward(index: FileIndex, scope: Scope) -> Iterator[Hit]:
    types = _submodule_types(index, scope.cls)
    if not any(t in DROPOUTS for t in types.values()) or not any(t in BATCHNORMS for t in types.values()):
        return
    selves = scope.self_names()
    kinds: dict[int, str] = {}
    applied: list[ast.AST] = []        # layer applications that data flows through, in order
    flowing: str | None = None         # the variable holding the output of the last application
    for stmt in scope.body:
        if not isinstance(stmt, (ast.Assign, ast.Return, ast.Expr)) or stmt.value is None:
            flowing = None if isinstance(stmt, (ast.If, ast.For, ast.While, ast.With, ast.Try)) else flowing
            continue
        chain = _applications(index, stmt.value, selves, types, kinds)
        if not chain:
            continue
        if applied and flowing is not None and not _uses_name(chain[0][1], flowing):
            yield from _chains(index, scope, applied, "forward()", kinds)
            applied = []
        applied += [node for node, _ in chain]
        targets = stmt.targets if isinstance(stmt, ast.Assign) else []
        flowing = targets[0].id if len(targets) == 1 and isinstance(targets[0], ast.Name) else None
    yield from _chains(index, scope, applied, "forward()", kinds)


def _applications(index, expr, selves, types, kinds) -> list[tuple[ast.AST, ast.AST]]:
    """Layer calls ``self.x(arg)`` nested in ``expr``, innermost first, as (call, argument)."""
    found = []
    node = expr
    while isinstance(node, ast.Call) and node.args:
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in selves \
                and func.attr in types:
            kinds[id(node)] = types[func.attr]
        elif (index.qualname(func) or "").startswith(("torch.nn.functional.", "torch.relu", "torch.tanh",
                                                      "torch.sigmoid", "torch.flatten")):
            kinds[id(node)] = "torch.nn.Identity"
        else:
            break
        found.append((node, node.args[0]))
        node = node.args[0]
    return found[::-1]


def _uses_name(node: ast.AST, name: str) -> bool:
    return any(isinstance(sub, ast.Name) and sub.id == name for sub in ast.walk(node))
