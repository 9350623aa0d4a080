"""EG105 fix: functional dropout follows the module's mode.

``F.dropout(x, p)`` gets ``training=self.training``; ``training=True`` becomes
``self.training``, and a flag such as ``training=self.use_dropout`` becomes
``self.training and self.use_dropout`` (the flag keeps working in training). Attention's
``dropout_p=p`` becomes ``p if self.training else 0.0``. Only inside a method (``self``).
"""
from __future__ import annotations

import libcst as cst

from evalguard.fixes._cst import (
    append_keyword,
    find_arg,
    has_star_kwargs,
    replace_value,
    self_name,
)

#: positions of ``training`` in F.dropout(input, p, training, inplace) and its relatives,
#: and of ``dropout_p`` in scaled_dot_product_attention(query, key, value, attn_mask, dropout_p)
TRAINING_POSITION = 2
DROPOUT_P_POSITION = 4


def fix(original: cst.Call, call: cst.Call, site, ctx):
    from evalguard.fixes.apply import Edit

    owner = self_name(original, ctx)
    if owner is None:
        return None
    training = cst.parse_expression(f"{owner}.training")
    function = str(site.evidence.get("function", "")) if hasattr(site.evidence, "get") else ""
    attention = "scaled_dot_product_attention" in function or find_arg(call, "dropout_p") is not None
    if attention:
        index = find_arg(call, "dropout_p", DROPOUT_P_POSITION)
        if index is None:
            return None
        value = call.args[index].value
        gated = cst.IfExp(test=training, body=_parenthesised(value), orelse=cst.Float("0.0"))
        return Edit(call=replace_value(call, index, gated))
    index = find_arg(call, "training", TRAINING_POSITION)
    if index is None:
        return None if has_star_kwargs(call) else Edit(call=append_keyword(call, "training", training))
    value = call.args[index].value
    if isinstance(value, cst.Name) and value.value == "True":
        return Edit(call=replace_value(call, index, training))
    both = cst.BooleanOperation(left=training, operator=cst.And(), right=_parenthesised(value))
    return Edit(call=replace_value(call, index, both))


def _parenthesised(value: cst.BaseExpression) -> cst.BaseExpression:
    simple = (cst.Name, cst.Attribute, cst.Integer, cst.Float, cst.Call, cst.Subscript)
    if isinstance(value, simple) or value.lpar:
        return value
    return value.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
