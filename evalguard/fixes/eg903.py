"""EG903 fix: ``torch.load(..., weights_only=False)`` -> ``weights_only=True``.

Safe when the loaded object only feeds ``load_state_dict`` (directly, or through a name used
only as ``load_state_dict(name)`` / ``load_state_dict(name["key"])``): then it is tensors, and
``weights_only=True`` loads it. Anything else (returned, passed on, called) may hold custom
classes that ``weights_only=True`` refuses, so the fix is unsafe there (``--unsafe-fixes``).
"""
from __future__ import annotations

import libcst as cst

from evalguard.fixes._cst import find_arg, replace_value


def fix(original: cst.Call, call: cst.Call, site, ctx):
    from evalguard.fixes.apply import Edit

    index = find_arg(call, "weights_only")
    if index is None:
        return None
    return Edit(call=replace_value(call, index, cst.Name("True")), unsafe=not only_state_dicts(original, ctx))


def _feeds_load_state_dict(node: cst.CSTNode, ctx) -> bool:
    """``X.load_state_dict(node)``, also through ``node["key"]``."""
    parent = ctx.parent(node)
    if isinstance(parent, (cst.SubscriptElement, cst.Index)):
        return False
    if isinstance(parent, cst.Subscript) and parent.value is node:
        return _feeds_load_state_dict(parent, ctx)
    if isinstance(parent, cst.Arg):
        call = ctx.parent(parent)
        return (isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)
                and call.func.attr.value == "load_state_dict")
    return False


class _Uses(cst.CSTVisitor):
    def __init__(self, name: str):
        self.name, self.nodes = name, []

    def visit_Name(self, node: cst.Name) -> None:
        if node.value == self.name:
            self.nodes.append(node)


def only_state_dicts(call: cst.Call, ctx) -> bool:
    if _feeds_load_state_dict(call, ctx):
        return True
    assign = ctx.parent(call)
    if not (isinstance(assign, cst.Assign) and len(assign.targets) == 1
            and isinstance(assign.targets[0].target, cst.Name)):
        return False
    name = assign.targets[0].target.value
    scope = next((a for a in ctx.ancestors(assign) if isinstance(a, (cst.FunctionDef, cst.Module))), None)
    uses = _Uses(name)
    scope.visit(uses)
    others = [node for node in uses.nodes if node is not assign.targets[0].target]
    return bool(others) and all(_feeds_load_state_dict(node, ctx) for node in others)
