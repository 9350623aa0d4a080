"""EG105 in source: functional dropout in a module's methods that does not follow ``self.training``.

Also reported: a Dropout module built and applied on the spot (``nn.Dropout(p)(x)``), which is a
fresh module in training mode on every call, out of reach of ``model.eval()``.

Scope (a heuristic, see the rule's known_problems): every instance method of a class that looks
like a module — a base spelled ``...Module`` (``nn.Module``, ``torch.nn.Module``, ``Module``,
``LightningModule``) or a class that defines ``forward``. Helper methods called from ``forward``
are included because they run in the same mode. Nested functions inside those methods are
included too (they close over ``self``).

A training argument "follows the mode" when it mentions any ``.training`` attribute
(``self.training``, ``self.training and self.use_dropout``, ``module.training``), a parameter of
the enclosing function (the caller passes the mode down), or a local variable assigned from such
an expression. ``scaled_dot_product_attention`` needs the same of its ``dropout_p``.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator

from evalguard.checks.source.index import (
    UNKNOWN,
    FileIndex,
    Hit,
    Scope,
    argument,
    module_like,
    spelled,
)

F = "torch.nn.functional."
#: function -> default of its training argument (None: the argument is required)
DROPOUT_FUNCS = {
    **{F + n: True for n in ("dropout", "dropout1d", "dropout2d", "dropout3d")},
    **{F + n: False for n in ("alpha_dropout", "feature_alpha_dropout")},
    **{f"torch.{n}": None for n in ("dropout", "dropout_", "alpha_dropout", "alpha_dropout_",
                                    "feature_dropout", "feature_dropout_", "feature_alpha_dropout",
                                    "feature_alpha_dropout_", "native_dropout")},
}
SDPA = {F + "scaled_dot_product_attention"}  # also any attention callable given dropout_p=
#: Dropout modules: built and applied on the spot (``nn.Dropout(p)(x)``) they are always in training mode.
DROPOUT_MODULES = {f"torch.nn.{n}" for n in ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
                                             "FeatureAlphaDropout")}


def check(index: FileIndex) -> Iterator[Hit]:
    for scope in index.scopes:
        if scope.cls is None or not module_like(index, scope.cls) or not _instance_method(scope.node):
            continue
        for inner in _with_nested(scope):
            for node in inner.calls():
                hit = _judge(index, inner, node)
                if hit is not None:
                    yield hit


def _instance_method(node) -> bool:
    decorators = {d.id if isinstance(d, ast.Name) else getattr(d, "attr", "") for d in node.decorator_list}
    return not decorators & {"staticmethod", "classmethod"} and bool(node.args.posonlyargs + node.args.args)


def _with_nested(scope: Scope) -> list[Scope]:
    """The method and the functions defined inside it (closures over ``self``)."""
    found, frontier = [scope], [scope]
    while frontier:
        children = [s for s in frontier.pop().children if s.cls is None]
        found += children
        frontier += children
    return found


def _judge(index: FileIndex, scope: Scope, call: ast.Call) -> Hit | None:
    if isinstance(call.func, ast.Call) and index.qualname(call.func.func) in DROPOUT_MODULES:
        return _judge_inline_module(index, scope, call.func)
    name = index.qualname(call.func)
    if name in DROPOUT_FUNCS:
        return _judge_dropout(index, scope, call, name)
    if name in SDPA or _attention_indirection(call, name):
        return _judge_sdpa(index, scope, call)
    return None


def _attention_indirection(call: ast.Call, name: str | None) -> bool:
    """An attention function reached through an attribute or a helper's choice
    (``self._attention_call(q, k, v, dropout_p=self.p)``): it gets a ``dropout_p`` and no mode."""
    if name and name.startswith("torch."):
        return False
    keywords = {kw.arg for kw in call.keywords}
    return "dropout_p" in keywords and not keywords & {"training", "train", "is_training", "deterministic"}


def _judge_dropout(index, scope, call, name) -> Hit | None:
    p = argument(index, scope, call, "p", 1)
    if p is not None and index.value(p, scope) == 0:
        return None
    default = DROPOUT_FUNCS[name]
    training = argument(index, scope, call, ("train" if name.startswith("torch.") and not name.startswith(F)
                                              else "training"), 2)
    func = spelled(call.func)
    if training is None:
        if default is None:
            return None      # required argument missing: the call fails anyway
        if default:
            problem = (f"{func}() without training=self.training drops activations in eval mode too "
                       "(training defaults to True)")
        else:
            problem = (f"{func}() without training=self.training never drops anything, not even in "
                       "training (training defaults to False)")
        effect = "always-on" if default else "never-on"
    else:
        value = index.value(training, scope)
        if value is False:
            return None      # explicitly disabled: a no-op, not a mode bug
        if value is not True and _follows_mode(index, scope, training):
            return None
        problem = (f"{func}(..., {spelled(training)}) ignores the module's mode: dropout stays on "
                   "after model.eval()")
        effect = "always-on" if value is True else "not-mode-dependent"
    return Hit("EG105", call, f"{problem}; pass training=self.training or use an nn.Dropout module",
               {"function": name, "effect": effect})


def _judge_inline_module(index, scope, built: ast.Call) -> Hit | None:
    p = argument(index, scope, built, "p", 0)
    if p is not None and index.value(p, scope) == 0:
        return None
    return Hit("EG105", built, (
        f"{spelled(built)} is built and applied inside a method: a new module is in training mode "
        "every call, so model.eval() never reaches it and dropout stays on at inference; create it "
        "once in __init__ (self.drop = nn.Dropout(p)) or use F.dropout(x, p, training=self.training)"),
        {"function": index.qualname(built.func), "effect": "always-on"})


def _judge_sdpa(index, scope, call) -> Hit | None:
    dropout_p = argument(index, scope, call, "dropout_p", 4)
    if dropout_p is None:
        return None
    value = index.value(dropout_p, scope)
    if value == 0 or (value is UNKNOWN and _follows_mode(index, scope, dropout_p)):
        return None
    return Hit("EG105", call, (
        f"{spelled(call.func)}(..., dropout_p={spelled(dropout_p)}) is not gated on self.training: "
        "attention dropout stays on after model.eval(); pass "
        "dropout_p=self.dropout_p if self.training else 0.0"),
        {"function": index.qualname(call.func), "effect": "always-on", "dropout_p": spelled(dropout_p)})


def _follows_mode(index: FileIndex, scope: Scope, node: ast.AST, depth: int = 0) -> bool:
    """Whether ``node`` mentions ``.training``, a parameter, or a local built from either."""
    selves = scope.self_names()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and sub.attr == "training":
            return True
        if isinstance(sub, ast.Name) and sub.id not in selves and depth < 4:
            search = scope
            while search is not None:
                if sub.id in search.params:
                    return True
                assigned = search.assigns.get(sub.id)
                if assigned is not None:
                    if any(_follows_mode(index, search, v, depth + 1) for v in assigned):
                        return True
                    break
                search = search.parent
    return False


