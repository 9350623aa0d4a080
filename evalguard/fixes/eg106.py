"""EG106 fix (unsafe): ``model.eval()`` inserted before the inference block.

The block is the nearest enclosing ``with torch.no_grad()`` / ``inference_mode()`` /
``set_grad_enabled(...)``, else the statement that runs the model. Unsafe: switching a model
to eval changes it for every other user of the same object (a training loop that shares it).
"""
from __future__ import annotations

import libcst as cst

GRAD_CONTEXTS = ("no_grad", "inference_mode", "set_grad_enabled")


def fix(original: cst.Call, call: cst.Call, site, ctx):
    from evalguard.fixes.apply import Edit

    model = _model(original, site, ctx)
    target = _block(original, ctx)
    if model is None or target is None:
        return None
    return Edit(unsafe=True, insert_before=target, insert_code=f"{model}.eval()\n")


def _model(call: cst.Call, site, ctx) -> str | None:
    named = site.evidence.get("model") if hasattr(site.evidence, "get") else None
    for text in (named, ctx.code(call.func)):
        if isinstance(text, str) and text:
            try:
                expression = cst.parse_expression(text)
            except cst.ParserSyntaxError:
                continue
            if isinstance(expression, (cst.Name, cst.Attribute, cst.Subscript)):   # cfg["net"] too
                return text
    return None


def _in_body(statement, ctx) -> bool:
    return isinstance(ctx.parent(statement), (cst.IndentedBlock, cst.Module))


def _block(call: cst.Call, ctx):
    statement = None
    for ancestor in ctx.ancestors(call):
        if isinstance(ancestor, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
            break
        if statement is None and isinstance(ancestor, (cst.SimpleStatementLine, cst.BaseCompoundStatement)) \
                and _in_body(ancestor, ctx):
            statement = ancestor
        if isinstance(ancestor, cst.With) and _in_body(ancestor, ctx) and any(
                name in ctx.code(item.item) for item in ancestor.items for name in GRAD_CONTEXTS):
            return ancestor
    return statement
