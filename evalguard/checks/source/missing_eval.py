"""EG106 in source: inference code that runs a model nobody put in eval mode.

The heuristic, in three parts (documented for users in rules/EG106.toml):

1. Inference code: the model calls inside a ``with torch.no_grad()`` /
   ``torch.inference_mode()`` / ``torch.set_grad_enabled(False)`` block (module level too), and
   every model call in a function decorated with those or named like inference (predict*,
   infer*, inference*, serve*, handle*, *_predict, *_inference). Lightning ``*_step`` methods
   are skipped: the Trainer switches modes itself.
2. The model: a variable or ``self.<attr>`` that is called (``m(x)``, ``m.forward(x)``,
   ``m.generate(x)``) and whose origin we can trace in this file to something known to return
   a module in training mode: ``torch.load``, ``torch.jit.load``, ``torch.hub.load``,
   ``timm.create_model``, a ``torchvision.models`` constructor, or instantiating a class that is
   an nn.Module (defined here, under ``torch.nn``, or named like a model: ``...Net``, ``...Model``).
   In-file factory functions are followed through their ``return``; parameters through the call
   sites in this file. ``from_pretrained`` returns an eval-mode model and counts as eval.
3. Eval evidence: ``.eval()`` or ``.train(False)`` on that model anywhere along that trace (the
   inference function, its callers, the factory, ``__init__``, module level), also through an
   in-file helper that calls ``.eval()`` on its parameter. An explicit ``.train()`` in the
   inference function means the mode is handled on purpose (BatchNorm recalibration, MC dropout),
   and so does returning the model from that function (it is being prepared, not served).

Anything we cannot trace is left alone: findings need a traced training-mode origin.
"""
from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass
from typing import Iterator

from evalguard.checks.source.index import (FUNCTION_NODES, FileIndex, Hit, Scope, call_arg, module_like,
                                           spelled, walk_scope)

GRAD_OFF = {"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad",
            "torch.autograd.inference_mode", "torch.autograd.grad_mode.no_grad",
            "torch.autograd.grad_mode.inference_mode"}
GRAD_TOGGLE = {"torch.set_grad_enabled", "torch.autograd.set_grad_enabled"}
INFERENCE_NAME = re.compile(r"^_*(predict|infer|inference|serve|serving|handle)(_|$)|_(predict|inference|infer)$")
TRAINING_SOURCES = {"torch.load", "torch.jit.load", "torch.hub.load", "timm.create_model"}
MODEL_CLASS_NAME = re.compile(r"(Net|Network|Model|Classifier|Regressor|Encoder|Decoder|Transformer|Detector|"
                              r"CNN|RNN|LSTM|GRU|MLP|ResNet|ViT|Module)\d*$")
# Methods that return the same module (or one in the same mode).
SAME_MODULE = {"to", "cuda", "cpu", "half", "float", "double", "bfloat16", "requires_grad_",
               "share_memory", "to_empty", "type", "apply", "zero_grad"}
MODEL_METHODS = {"forward", "generate"}
#: Calls that return their first argument's module (or a wrapper running it in its mode).
WRAPPERS = {"torch.compile", "torch.jit.script", "torch.jit.trace", "torch.nn.DataParallel",
            "torch.nn.parallel.DistributedDataParallel", "copy.deepcopy", "copy.copy"}
#: torch.nn classes whose output depends on the mode (a Linear or a loss does not).
TORCH_NN_MODE_DEPENDENT = {f"torch.nn.{n}" for n in (
    "Sequential", "ModuleDict", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
    "FeatureAlphaDropout", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm",
    "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d", "InstanceNorm1d", "InstanceNorm2d",
    "InstanceNorm3d", "MultiheadAttention", "Transformer", "TransformerEncoder", "TransformerDecoder",
    "TransformerEncoderLayer", "TransformerDecoderLayer", "RNN", "LSTM", "GRU")}
MAX_DEPTH = 6
BUILTINS = frozenset(dir(builtins))


@dataclass(frozen=True)
class Origin:
    state: str                    # "eval" | "train" | "unknown"
    node: ast.AST | None = None   # where the training-mode model was created
    text: str = ""

    @staticmethod
    def combine(origins: list["Origin"]) -> "Origin":
        for state in ("eval", "train"):
            for origin in origins:
                if origin.state == state:
                    return origin
        return UNKNOWN_ORIGIN


UNKNOWN_ORIGIN = Origin("unknown")
EVAL_ORIGIN = Origin("eval")


def check(index: FileIndex) -> Iterator[Hit]:
    tracer = Tracer(index)
    for scope in index.scopes:
        calls = _inference_calls(index, scope)
        if not calls:
            continue
        seen = set()
        for call, key in _model_calls(index, scope, calls):
            if key in seen:
                continue
            seen.add(key)
            if tracer.trains_explicitly(scope, key) or _returns(scope, key):
                continue
            origin = tracer.origin_of_key(scope, key, 0)
            if origin.state == "train":
                yield _hit(scope, call, key, origin)


def _hit(scope: Scope, call: ast.Call, key, origin: Origin) -> Hit:
    model = key[1] if key[0] == "name" else f"self.{key[1]}"
    where = "module-level code" if scope.is_module else f"{scope.name}()"
    created = f"{origin.text} at line {origin.node.lineno}" if origin.node is not None else origin.text
    return Hit("EG106", call, (
        f"{where} runs {model} for inference, but {model}.eval() is never called on it (here, in "
        f"its callers in this file, or where it is created: {created}); Dropout and BatchNorm "
        f"still behave as in training — call {model}.eval() after loading"),
        {"function": scope.name, "model": model, "created": origin.text,
         "created_line": getattr(origin.node, "lineno", None)})


# -- which calls are inference --------------------------------------------------------------

def _grad_off_call(index: FileIndex, node: ast.AST, scope: Scope) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    name = index.qualname(target)
    if name in GRAD_OFF:
        return True
    if name in GRAD_TOGGLE and isinstance(node, ast.Call):
        mode = call_arg(node, 0, "mode")
        return mode is not None and index.value(mode, scope) is False
    return False


def _inference_calls(index: FileIndex, scope: Scope) -> list[ast.Call]:
    """Calls that run under inference: the whole function, or only inside grad-off blocks."""
    if scope.is_class_body:
        return []
    if not scope.is_module:
        name = scope.name
        if name.endswith("_step") or name == "forward":
            return []
        if any(_grad_off_call(index, d, scope) for d in scope.node.decorator_list) or INFERENCE_NAME.search(name):
            return scope.calls()
    calls: list[ast.Call] = []
    for node in scope.nodes():
        if isinstance(node, (ast.With, ast.AsyncWith)) and any(
                _grad_off_call(index, item.context_expr, scope) for item in node.items):
            calls += [n for n in walk_scope(node.body) if isinstance(n, ast.Call)]
    return calls


def _model_calls(index: FileIndex, scope: Scope, calls) -> Iterator[tuple[ast.Call, tuple]]:
    """Calls that run something model-like, with a key naming it: ("name", x) or ("self", attr)."""
    selves = scope.self_names()
    cls = _class_of(scope)
    # Inside an nn.Module, self.<attr> is a submodule: it follows the parent's mode.
    submodules = cls is not None and module_like(index, cls)
    for call in calls:
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr in MODEL_METHODS:
            func = func.value
        key = _key(func, selves)
        if key is None or (key[0] == "self" and (submodules or _is_method(scope, key[1]))):
            continue
        if key[0] == "name" and _never_a_model(index, key[1]):
            continue
        yield call, key


def _never_a_model(index: FileIndex, name: str) -> bool:
    """Builtins, imported names, and functions or classes defined in the file are not models."""
    return (name in BUILTINS or name in index.aliases or name in index.classes
            or bool(index.functions_named(name)))


def _key(node: ast.AST, selves: set[str]):
    if isinstance(node, ast.Name) and node.id not in selves:
        return ("name", node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in selves:
        return ("self", node.attr)
    return None


def _returns(scope: Scope, key) -> bool:
    """A function that returns the model it ran is preparing it (e.g. warming up BatchNorm
    statistics under no_grad), not serving it: eval() is expected where it is used."""
    selves = scope.self_names()
    for node in scope.nodes():
        if isinstance(node, ast.Return) and node.value is not None:
            value = node.value
            while isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) \
                    and value.func.attr in SAME_MODULE | {"eval", "train"}:
                value = value.func.value      # `return model.to(device)` is still the model
            if _key(value, selves) == key:
                return True
    return False


def _class_of(scope: Scope) -> ast.ClassDef | None:
    while scope is not None:
        if scope.cls is not None:
            return scope.cls
        scope = scope.parent
    return None


def _is_method(scope: Scope, name: str) -> bool:
    cls = _class_of(scope)
    return cls is not None and any(isinstance(s, FUNCTION_NODES) and s.name == name for s in cls.body)


def _receiver_key(node: ast.AST, selves: set[str]):
    """The model a method chain starts from: ``model.to(d).eval`` -> ("name", "model")."""
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute) and _key(node, selves) is None:
            node = node.value
        else:
            return _key(node, selves)


def _is_eval_call(index: FileIndex, call: ast.Call, scope: Scope) -> bool:
    if not isinstance(call.func, ast.Attribute):
        return False
    if call.func.attr == "eval" and not call.args:
        return True
    if call.func.attr == "train":
        mode = call_arg(call, 0, "mode")
        return mode is not None and index.value(mode, scope) is False
    return False


# -- where a model comes from ---------------------------------------------------------------

class Tracer:
    def __init__(self, index: FileIndex):
        self.index = index
        self._memo: dict = {}
        self._sites: dict | None = None
        self._methods: dict[int, list[Scope]] = {}
        for scope in index.scopes:
            if scope.cls is not None:
                self._methods.setdefault(id(scope.cls), []).append(scope)

    # keys ---------------------------------------------------------------------------------
    def origin_of_key(self, scope: Scope, key, depth: int) -> Origin:
        memo_key = (id(scope), key)
        if memo_key in self._memo:
            return self._memo[memo_key]
        self._memo[memo_key] = UNKNOWN_ORIGIN          # cycles resolve to unknown
        if key[0] == "self":
            result = self._origin_of_attr(scope, key[1], depth)
        else:
            result = self._origin_of_name(scope, key[1], depth)
        self._memo[memo_key] = result
        return result

    def trains_explicitly(self, scope: Scope, key) -> bool:
        selves = scope.self_names()
        for node in scope.calls():
            if isinstance(node.func, ast.Attribute) and node.func.attr == "train" \
                    and not _is_eval_call(self.index, node, scope) and _receiver_key(node.func.value, selves) == key:
                return True
        return False

    def _evaluated_in(self, scope: Scope, key) -> bool:
        memo_key = ("evaluated", id(scope), key)
        if memo_key not in self._memo:
            self._memo[memo_key] = False        # recursion through helpers: not (yet) evaluated
            self._memo[memo_key] = self._find_eval(scope, key)
        return self._memo[memo_key]

    def _find_eval(self, scope: Scope, key) -> bool:
        """``.eval()`` on the model in this scope, directly or through an in-file helper."""
        selves = scope.self_names()
        for node in scope.calls():
            if _is_eval_call(self.index, node, scope) and _receiver_key(node.func.value, selves) == key:
                return True
            if key[0] == "self" and _is_eval_call(self.index, node, scope) and \
                    isinstance(node.func.value, ast.Name) and node.func.value.id in selves:
                return True           # self.eval() switches every submodule
            for position, arg in enumerate(node.args):
                if _key(arg, selves) == key and self._helper_evaluates(scope, node, position, None):
                    return True
            for kw in node.keywords:
                if kw.arg and _key(kw.value, selves) == key and self._helper_evaluates(scope, node, None, kw.arg):
                    return True
        return False

    def _helper_evaluates(self, scope: Scope, call: ast.Call, position, keyword) -> bool:
        for helper, offset in self._callees(scope, call):
            params = helper.params
            name = keyword if keyword is not None else (
                params[position + offset] if position + offset < len(params) else None)
            if name in params and self._evaluated_in(helper, ("name", name)):
                return True
        return False

    def _callees(self, scope: Scope, call: ast.Call) -> list[tuple[Scope, int]]:
        """In-file functions a call may reach, with the parameter offset (1 for methods via self)."""
        func = call.func
        if isinstance(func, ast.Name):
            return [(s, 0) for s in self.index.functions_named(func.id) if s.cls is None]
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                and func.value.id in scope.self_names():
            cls = _class_of(scope)
            return [(s, 1) for s in self.index.functions_named(func.attr) if s.cls is cls]
        return []

    # names --------------------------------------------------------------------------------
    def _origin_of_name(self, scope: Scope, name: str, depth: int) -> Origin:
        key = ("name", name)
        search = scope
        while search is not None:
            if self._evaluated_in(search, key):
                return EVAL_ORIGIN
            if search.is_module and self._evaluated_anywhere_global(name):
                return EVAL_ORIGIN
            if name in search.assigns:
                return self._origin_of_assigned(search, name, depth)
            if name in search.params:
                return self._origin_of_param(search, name, depth)
            search = search.parent
        return UNKNOWN_ORIGIN

    def _evaluated_anywhere_global(self, name: str) -> bool:
        """A module-level model may be put in eval mode by any function that does not shadow it."""
        memo_key = ("global", name)
        if memo_key not in self._memo:
            self._memo[memo_key] = self._find_global_eval(name)
        return self._memo[memo_key]

    def _find_global_eval(self, name: str) -> bool:
        for scope in self.index.scopes:
            if not scope.is_module and (name in scope.assigns or name in scope.params):
                continue
            if self._evaluated_in(scope, ("name", name)):
                return True
        return False

    def _origin_of_assigned(self, scope: Scope, name: str, depth: int) -> Origin:
        selves = scope.self_names()
        origins = []
        for value in scope.assigns[name]:
            if _receiver_key(value, selves) == ("name", name):      # model = model.to(device)
                if _chain_has_eval(self.index, value, scope):
                    return EVAL_ORIGIN
                continue
            origins.append(self._origin_of_value(scope, value, depth + 1))
        return Origin.combine(origins)

    def _origin_of_param(self, scope: Scope, name: str, depth: int) -> Origin:
        if depth >= MAX_DEPTH or scope.is_module:
            return UNKNOWN_ORIGIN
        position = scope.params.index(name)
        offset = 1 if scope.cls is not None else 0
        origins = []
        for caller, call in self._call_sites(scope):
            arg = call_arg(call, position - offset, name)
            if arg is None:
                continue
            origins.append(self._origin_of_value(caller, arg, depth + 1))
        if not origins or any(o.state == "unknown" for o in origins):
            return Origin.combine([o for o in origins if o.state == "eval"])
        return Origin.combine(origins)

    def _call_sites(self, target: Scope) -> list[tuple[Scope, ast.Call]]:
        if self._sites is None:     # one pass over the file: callee -> call sites
            self._sites = {}
            for scope in self.index.scopes:
                for node in scope.calls():
                    for callee, _ in self._callees(scope, node):
                        self._sites.setdefault(id(callee), []).append((scope, node))
        return self._sites.get(id(target), [])

    # attributes ---------------------------------------------------------------------------
    def _origin_of_attr(self, scope: Scope, attr: str, depth: int) -> Origin:
        cls = _class_of(scope)
        if cls is None:
            return UNKNOWN_ORIGIN
        methods = self._methods.get(id(cls), [])
        if any(self._evaluated_in(m, ("self", attr)) for m in methods):
            return EVAL_ORIGIN
        origins = []
        for method in methods:
            selves = method.self_names()
            for node in method.nodes():
                if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    if any(_key(t, selves) == ("self", attr) for t in targets):
                        if _receiver_key(node.value, selves) == ("self", attr):
                            if _chain_has_eval(self.index, node.value, method):
                                return EVAL_ORIGIN
                            continue
                        origins.append(self._origin_of_value(method, node.value, depth + 1))
        return Origin.combine(origins)

    # values -------------------------------------------------------------------------------
    def _origin_of_value(self, scope: Scope, value: ast.AST, depth: int) -> Origin:
        if depth > MAX_DEPTH:
            return UNKNOWN_ORIGIN
        if _chain_has_eval(self.index, value, scope):
            return EVAL_ORIGIN
        selves = scope.self_names()
        while isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) \
                and value.func.attr in SAME_MODULE:
            value = value.func.value
        key = _key(value, selves)
        if key is not None:
            return self.origin_of_key(scope, key, depth + 1)
        if not isinstance(value, ast.Call):
            return UNKNOWN_ORIGIN
        return self._origin_of_call(scope, value, depth)

    def _origin_of_call(self, scope: Scope, call: ast.Call, depth: int) -> Origin:
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr == "from_pretrained":
            return EVAL_ORIGIN                      # transformers/diffusers return eval-mode models
        name = self.index.qualname(func) or ""
        text = spelled(func) + "(...)"
        if name in WRAPPERS and call.args:
            return self._origin_of_value(scope, call.args[0], depth + 1)
        if name in TRAINING_SOURCES or name.startswith("torchvision.models."):
            return Origin("train", call, text)
        callees = self._callees(scope, call)
        if callees:                                 # an in-file factory: follow its returns
            origins = []
            for factory, _ in callees:
                for node in factory.nodes():
                    if isinstance(node, ast.Return) and node.value is not None:
                        origins.append(self._origin_of_value(factory, node.value, depth + 1))
            return Origin.combine(origins)
        if self._is_model_class(call, name):
            return Origin("train", call, text)
        return UNKNOWN_ORIGIN

    def _is_model_class(self, call: ast.Call, qualname: str) -> bool:
        func = call.func
        short = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if not short[:1].isupper():
            return False
        if short in self.index.classes:
            return module_like(self.index, self.index.classes[short])
        if qualname == "torch.nn.Sequential":   # only when it holds something mode-dependent
            return any(not isinstance(a, ast.Call) or self._is_model_class(a, self.index.qualname(a.func) or "")
                       for a in call.args)
        if qualname.startswith("torch."):
            return qualname in TORCH_NN_MODE_DEPENDENT
        return bool(MODEL_CLASS_NAME.search(short))


def _chain_has_eval(index: FileIndex, value: ast.AST, scope: Scope) -> bool:
    """``Net().to(d).eval()``: an eval call anywhere in the method chain of the value."""
    node = value
    while isinstance(node, (ast.Call, ast.Attribute)):
        if isinstance(node, ast.Call):
            if _is_eval_call(index, node, scope):
                return True
            node = node.func
        else:
            node = node.value
    return False
