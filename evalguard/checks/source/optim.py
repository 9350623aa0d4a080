"""EG301 in source: an Adam-family optimizer built with coupled weight decay.

Recognised: ``Adam``/``NAdam``/``RAdam``/``Adamax`` from ``torch.optim`` under any import
spelling, also through ``functools.partial``; ``weight_decay`` given by keyword, position or a
``**kwargs`` dict known statically, or per param group (``[{"params": ..., "weight_decay": ...}]``,
the Hugging Face no-decay layout). A value that cannot be resolved statically is still reported
(it is weight decay wired into Adam), and the message says the value is unknown.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator

from evalguard.checks.source.index import FileIndex, Hit, Scope, argument, calls_in, spelled

#: class -> (short name, position of weight_decay, position of decoupled_weight_decay)
COUPLED = {
    "torch.optim.Adam": ("Adam", 4, None),
    "torch.optim.NAdam": ("NAdam", 4, 6),
    "torch.optim.RAdam": ("RAdam", 4, 5),
    "torch.optim.Adamax": ("Adamax", 4, None),
}
PARTIAL = {"functools.partial"}
FIX = {"Adam": "use torch.optim.AdamW (or Adam(..., decoupled_weight_decay=True))",
       "NAdam": "pass decoupled_weight_decay=True", "RAdam": "pass decoupled_weight_decay=True",
       "Adamax": "use torch.optim.AdamW (Adamax has no decoupled option)"}


def check(index: FileIndex) -> Iterator[Hit]:
    for scope, call in calls_in(index):
        target, shift = index.qualname(call.func), 0
        if target in PARTIAL and call.args:
            target, shift = index.qualname(call.args[0]), 1
        spec = COUPLED.get(target or "")
        if spec is not None:
            hit = _judge(index, scope, call, spec, shift)
            if hit is not None:
                yield hit


def _arg(index, scope, call, name, pos, shift):
    return argument(index, scope, call, name, None if pos is None else pos + shift)


def _judge(index: FileIndex, scope: Scope, call: ast.Call, spec, shift: int) -> Hit | None:
    family, wd_pos, dwd_pos = spec
    decoupled = _arg(index, scope, call, "decoupled_weight_decay", dwd_pos, shift)
    if decoupled is not None and index.value(decoupled, scope) is not False:
        return None     # True, or not known: not our business to guess
    top = _arg(index, scope, call, "weight_decay", wd_pos, shift)
    decays = []         # (where, node) for every group's effective weight decay
    groups = _param_groups(index, scope, _arg(index, scope, call, "params", 0, shift))
    if groups is None:
        decays.append(("", top))
    for gi, group in enumerate(groups or ()):
        if "decoupled_weight_decay" in group and index.value(group["decoupled_weight_decay"], scope) is not False:
            continue
        own = group.get("weight_decay")
        decays.append((f" in param group {gi}" if own is not None else "", own if own is not None else top))
    nonzero, unknown = [], []
    for where, node in decays:
        value = 0 if node is None else index.value(node, scope)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != 0:
                nonzero.append((where, node, value))
        elif node is not None:
            unknown.append((where, node))
    if not nonzero and not unknown:
        return None
    if nonzero:
        where, node, value = nonzero[0]
        described = f"weight_decay={value:g}{where}"
    else:
        where, node = unknown[0]
        described = f"weight_decay={spelled(node)}{where} (value not known statically)"
    message = (f"{spelled(call.func)}(...) with {described} is coupled L2: the decay is added to the "
               f"gradient before {family}'s adaptive scaling, so weights with large gradients are "
               f"regularised less than the rest; {FIX[family]}")
    return Hit("EG301", call, message, {
        "optimizer": family, "weight_decay": [v for _, _, v in nonzero] + [spelled(n) for _, n in unknown],
        "value_known": not unknown, "param_groups": groups is not None,
    })


def _param_groups(index: FileIndex, scope: Scope, node) -> list[dict] | None:
    """Param-group dicts (key -> value node) when ``params`` is a literal list of dicts."""
    if node is None:
        return None
    node = index.resolve_node(node, scope)
    if not isinstance(node, (ast.List, ast.Tuple)) or not node.elts:
        return None
    groups = []
    for element in node.elts:
        element = index.resolve_node(element, scope)
        if not isinstance(element, ast.Dict):
            return None
        value = index.value(element, scope)
        if not isinstance(value, dict):
            return None
        groups.append({k: v for k, v in value.items() if isinstance(k, str)})
    return groups
