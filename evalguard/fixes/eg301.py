"""EG301 fix: coupled Adam weight decay -> decoupled.

``Adam(...)`` becomes ``AdamW(...)`` spelled the way the file spells it (``torch.optim.AdamW``,
``optim.AdamW``, or the name ``AdamW`` with the import added, or replacing ``Adam`` in the
import when nothing else uses it). Every argument is kept: Adam and AdamW share their
positional order; Adam's ``decoupled_weight_decay=False`` is dropped (AdamW has none); and
when no top-level ``weight_decay`` is given, ``weight_decay=0.0`` is added so param groups
without their own keep Adam's default of 0 instead of AdamW's 0.01. NAdam and RAdam get
``decoupled_weight_decay=True``. Adamax (no decoupled variant) and ``functools.partial`` are
left alone.
"""
from __future__ import annotations

import libcst as cst

from evalguard.fixes._cst import (
    append_keyword,
    find_arg,
    qualname,
    remove_arg,
    replace_value,
)

OPTIM = "torch.optim"
#: optimizers with a ``decoupled_weight_decay`` argument -> its position
DECOUPLED_POSITION = {"NAdam": 6, "RAdam": 5}


def _family(call: cst.Call, ctx) -> str | None:
    name = qualname(call.func, ctx.aliases)
    if not name.startswith(OPTIM + "."):
        return None
    return name.rsplit(".", 1)[1]


def fix(original: cst.Call, call: cst.Call, site, ctx):
    from evalguard.fixes.apply import Edit

    family = _family(original, ctx)
    if family == "Adam":
        return _to_adamw(original, call, ctx)
    if family in DECOUPLED_POSITION:
        index = find_arg(call, "decoupled_weight_decay", DECOUPLED_POSITION[family])
        true = cst.Name("True")
        return Edit(call=replace_value(call, index, true) if index is not None
                    else append_keyword(call, "decoupled_weight_decay", true))
    return None


def _to_adamw(original: cst.Call, call: cst.Call, ctx):
    from evalguard.fixes.apply import Edit

    import_name = None
    if isinstance(call.func, cst.Attribute):
        func = call.func.with_changes(attr=cst.Name("AdamW"))
    elif isinstance(call.func, cst.Name):
        local = ctx.local_name_for(f"{OPTIM}.AdamW")
        if local is None:
            local = "AdamW"
            import_name = (OPTIM, "AdamW", call.func.value)
        func = cst.Name(local)
    else:
        return None
    new = call.with_changes(func=func)
    decoupled = find_arg(new, "decoupled_weight_decay")
    if decoupled is not None:
        new = remove_arg(new, decoupled)
    if find_arg(new, "weight_decay", 4) is None:
        new = append_keyword(new, "weight_decay", cst.Float("0.0"))
    return Edit(call=new, import_name=import_name)
