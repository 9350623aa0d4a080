"""EG106 in source: inference or evaluation code that runs a model nobody put in eval mode.

The heuristic (documented for users in rules/EG106.toml):

1. Where a model runs for inference. *Inference* calls: inside ``with torch.no_grad()`` /
   ``torch.inference_mode()`` / ``torch.set_grad_enabled(False)`` (module level too), in functions
   decorated with those or named like inference (predict*, infer*, serve*, handle*, ...), and in
   ``forward``/``__call__`` of a class that is not itself an nn.Module (an adapter around a loaded
   model). *Evaluation* calls: in functions named like evaluation (test, evaluate*, validate*, val*,
   detect*, *_test, *_eval, ...) that do not call ``backward()``, and in *evaluation regions*: a
   loop over a test/validation loader, or the statements from a use of test/validation data to the
   end of their block, with no ``backward()`` inside. ``*_step`` methods of nn.Modules (Lightning)
   are skipped. Also inference: embedding functions (embed*, get_embedding*), runs of a network after
   trained weights were loaded into it in code that never trains (``_runs_after_loading``), a
   module-level network run by the functions of a file that never trains, and functions with no
   training that inference code calls by name or through an instance (``self.engine.run(batch)``):
   they inherit the context (``_called_from_inference``).
2. The model's mode at that call. Inside the function, the last ``.eval()`` / ``.train()`` on the
   model *before* the call decides (order matters: a ``.train()`` earlier in a training function
   means the evaluation runs in training mode; in a function with no ``backward()`` it means the mode
   is handled on purpose, e.g. Monte Carlo dropout or BatchNorm recalibration). Otherwise the model's
   origin is traced: assignments, ``.to()``/``.cuda()`` chains, conditional expressions, wrappers,
   factories (also imported from other files of the project), ``self.<attr>`` set in any method of
   the class or of its bases (also in other files), parameters through their call sites (a caller
   that called ``.train()`` on the model just before passing it counts as training mode). Training
   mode: ``torch.load``, ``torch.jit.load``, ``torch.hub.load``, ``timm``/``torchvision`` constructors,
   or instantiating an nn.Module class (decided from its bases across the project, not its name).
   ``from_pretrained`` and ``.eval()`` anywhere on the trace are eval mode.
3. What is left alone: a model class with no mode-dependent layer (no Dropout, BatchNorm, RNN, ...);
   a function that returns the model it ran (it prepares it); anything that cannot be traced --
   except a parameter named like a model (``model``, ``net``, ``task_model``, ...) in evaluation code
   of a file that also trains (calls ``backward()``), or in inference code of a file whose loader
   returns a training-mode model: evaluation inside or after training, serving next to its loader.
   ``self(x)`` in a module's own predict/evaluate method is reported only when the class is known to
   hold a mode-dependent layer.
"""
from __future__ import annotations

import ast
import builtins
import os
import re
from collections.abc import Iterator

from evalguard.checks.source import project
from evalguard.checks.source.index import (
    FUNCTION_NODES,
    FileIndex,
    Hit,
    Scope,
    call_arg,
    module_like,
    walk_scope,
)
from evalguard.checks.source.model_origin import (
    CONSTRUCTOR_NAME,
    MODEL_METHODS,
    SAME_MODULE,
    SELF_CALL,
    Origin,
    Tracer,
    Use,
    class_of,
    has_backward,
    key_of,
    position,
)

GRAD_OFF = {"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad",
            "torch.autograd.inference_mode", "torch.autograd.grad_mode.no_grad",
            "torch.autograd.grad_mode.inference_mode"}
GRAD_TOGGLE = {"torch.set_grad_enabled", "torch.autograd.set_grad_enabled"}
INFERENCE_NAME = re.compile(r"^_*(predict|infer|inference|serve|serving|handle)(_|$)|_(predict|inference|infer)$"
                            r"|(^|_)(embed|embedding|embeddings|prediction|predictions|classify)(_|$)")
EVAL_NAME = re.compile(r"^_*(test|testing|evaluate|evaluation|eval|validate|validation|valid|val|detect)(_|$)"
                       r"|_(test|eval|evaluate|evaluation|validate|validation)$")
#: Identifiers of evaluation data: test_loader, testdataloader, val_loader, x_test, images_val, ...
EVAL_DATA = re.compile(r"(?:^|_)(?:test|val|valid|validation|eval|evaluation|dev|testing)"
                       r"(?:_|$|loader|dataloader|data|dataset|set|iter|images|imgs|x|y)", re.IGNORECASE)
BUILTINS = frozenset(dir(builtins))
#: The network a module wraps (``self.model``, ``self.net``, ``self.backbone``).
MODEL_ATTR = re.compile(r"^_*(model|net|network|backbone|encoder|classifier)$", re.IGNORECASE)


def check(index: FileIndex) -> Iterator[Hit]:
    tracer = Tracer.of(index)
    reported: dict[int, bool] = {}     # network creation -> reported through a plain wrapper holding it
    for scope in index.scopes:
        seen = set()
        for use in _uses(index, scope):
            if use.key in seen:
                continue
            seen.add(use.key)
            if use.key != SELF_CALL and _returns(scope, use.key):
                continue
            origin = tracer.judge(scope, use)
            if origin.state == "train" and origin.confidence == "medium" and _is_pytest_file(index.path):
                continue         # test suites build modules of every kind and compare them: too weak there
            if origin.state == "train":
                if _reported_twice(reported, origin):
                    continue     # the wrapper's own method and its caller run the same held network
                yield _hit(scope, use, origin)


def _reported_twice(reported: dict[int, bool], origin: Origin) -> bool:
    """One finding per held network: a plain wrapper's ``self.net(x)`` and ``wrapper(x)`` in its
    caller are the same bug, reported where it is met first."""
    if origin.node is None:
        return False
    node = id(origin.node)
    if node in reported and (reported[node] or origin.held):
        return True
    reported[node] = reported.get(node, False) or bool(origin.held)
    return False


def _hit(scope: Scope, use: Use, origin: Origin) -> Hit:
    model = "self" if use.key == SELF_CALL else use.key[1] if use.key[0] == "name" else f"self.{use.key[1]}"
    if origin.held:                 # a plain wrapper runs the network it holds: that one has eval()
        model = f"{model}.{origin.held}"
    where = "module-level code" if scope.is_module else f"{scope.name}()"
    created = f"{origin.text} at line {origin.node.lineno}" if origin.node is not None else origin.text
    doing = "evaluates" if use.kind == "evaluation" else "runs"
    if origin.confidence == "high":
        why = "Dropout and BatchNorm still behave as in training"
    else:
        why = ("its class is not visible here, and a network has Dropout or BatchNorm unless shown otherwise "
               "(confidence: medium)")
    return Hit("EG106", use.call, (
        f"{where} {doing} {model} for inference, but {model} is in training mode there ({created}) and "
        f"{model}.eval() is never called before; {why} — call {model}.eval() first"),
        {"function": scope.name, "model": model, "created": origin.text, "kind": use.kind,
         "created_line": getattr(origin.node, "lineno", None), "confidence": origin.confidence})


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


def _is_pytest_file(path: str | None) -> bool:
    if not path:
        return False
    base = os.path.basename(path)
    parts = set(os.path.normpath(path).split(os.sep)[:-1])
    return base.startswith("test_") or base.endswith("_test.py") or bool(parts & {"test", "tests", "testing"})




def _inference_calls(index: FileIndex, scope: Scope) -> list[tuple[ast.Call, str]]:
    """Calls that run under inference or evaluation, with their kind (memoised per scope)."""
    memo = index.__dict__.setdefault("_inference_memo", {})
    if id(scope) not in memo:
        memo[id(scope)] = []                        # a recursive call chain is no inference by itself
        found = _own_inference_calls(index, scope)
        if not found and not scope.is_module and not scope.is_class_body and _called_from_inference(index, scope):
            found = [(c, "inference") for c in scope.calls()]
        memo[id(scope)] = found
    return memo[id(scope)]


def _called_from_inference(index: FileIndex, scope: Scope) -> bool:
    """A function with no training in it that inference code of this file calls -- by name, through
    ``self.helper(...)``, or through an instance held in an attribute (``self.engine.run(batch)``) --
    runs in inference too: a module-level worker, an engine's ``run()``, a notebook's helper."""
    if scope.name.startswith("__") or has_backward(scope.calls()) or scope.name.endswith(("_step", "_end", "_start")):
        return False
    if scope.parent is not index.module:
        return False     # a closure is its caller's business
    # self.helper(...) is followed from the caller (``_through_helper``): only calls by name here,
    # of a function of this file that the name is not rebound from
    if scope.cls is not None:
        sites = _instance_call_sites(index, scope)
    else:
        sites = [(caller, call) for caller, call in _instances(index)[2].get(scope.name, [])
                 if scope.name not in caller.assigns and scope.name not in caller.params]
    if not sites or (scope.cls is not None and module_like(index, scope.cls)):
        return False     # a module's own helpers follow its mode
    for caller, call in sites:
        if caller is scope:
            continue
        if any(c is call for c, _ in _inference_calls(index, caller)):
            index.__dict__.setdefault("_inherited", set()).add(id(scope))
            return True
    return False


LOADERS = {"torch.load", "torch.jit.load", "torch.hub.load"}


def _loads_trained(index: FileIndex, value: ast.AST) -> bool:
    """A value that is trained weights: ``torch.load``/``torch.jit.load``/``torch.hub.load``, or a
    constructor asked for pretrained weights (``resnet50(pretrained=True)``, ``weights="DEFAULT"``)."""
    while isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr in SAME_MODULE:
        value = value.func.value
    if not isinstance(value, ast.Call):
        return False
    if index.qualname(value.func) in LOADERS:
        return True
    for keyword in value.keywords:
        if keyword.arg == "pretrained" and isinstance(keyword.value, ast.Constant) and keyword.value.value is True:
            return True
        if keyword.arg == "weights" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is None):
            return True
    return False


def _global_network_calls(index: FileIndex, scope: Scope) -> list[tuple[ast.Call, str]]:
    """A script that never trains (no ``backward()`` or ``step()`` in the file) and keeps its network in
    a module-level variable: the functions that run it are its inference (a notebook's helpers)."""
    if scope.parent is not index.module or scope.cls is not None or _is_pytest_file(index.path) \
            or Tracer.of(index).file_trains() or _file_steps(index):
        return []
    globals_ = index.module.assigns
    found = []
    for call in scope.calls():
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr in MODEL_METHODS:      # net.forward(x), clip.encode_image(x)
            func = func.value
        if isinstance(func, ast.Name) and func.id in globals_ and func.id not in scope.assigns \
                and func.id not in scope.params:
            found.append((call, "inference"))
    return found


def _file_steps(index: FileIndex) -> bool:
    memo = index.__dict__.setdefault("_inference_memo", {})
    if "steps" not in memo:
        memo["steps"] = any(isinstance(c.func, ast.Attribute) and c.func.attr == "step"
                            for s in index.scopes for c in s.calls())
    return memo["steps"]


def _instance_call_sites(index: FileIndex, method: Scope) -> list[tuple[Scope, ast.Call]]:
    """``self.<attr>.<method>(...)`` in this file where ``self.<attr>`` holds an instance of the
    method's class (``self.engine = Engine(model)``)."""
    holders, calls, _ = _instances(index)
    keys = holders.get(method.cls.name, set())
    return [(scope, call) for scope, call, key in calls.get(method.name, []) if key in keys]


def _instances(index: FileIndex):
    """Once per file: class name -> keys that hold an instance (``self.engine = Engine(...)``),
    method name -> ``<key>.<method>(...)`` calls with their scope and key, and function name -> calls
    by that name with their scope."""
    cached = index.__dict__.get("_instances")
    if cached is None:
        holders: dict[str, set] = {}
        calls: dict[str, list] = {}
        by_name: dict[str, list] = {}
        for scope in index.scopes:
            selves = scope.self_names()
            for node in scope.nodes():
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                        and isinstance(node.value.func, ast.Name):
                    holders.setdefault(node.value.func.id, set()).update(
                        k for k in (key_of(t, selves) for t in node.targets) if k is not None)
            for call in scope.calls():
                func = call.func
                if isinstance(func, ast.Name):
                    by_name.setdefault(func.id, []).append((scope, call))
                elif isinstance(func, ast.Attribute):
                    key = key_of(func.value, selves)
                    if key is not None:
                        calls.setdefault(func.attr, []).append((scope, call, key))
        cached = index.__dict__["_instances"] = (holders, calls, by_name)
    return cached


def inherits_inference(index: FileIndex, scope: Scope) -> bool:
    return id(scope) in index.__dict__.get("_inherited", ())


def _own_inference_calls(index: FileIndex, scope: Scope) -> list[tuple[ast.Call, str]]:
    if scope.is_class_body:
        return []
    found: list[tuple[ast.Call, str]] = []
    if not scope.is_module:
        name = scope.name
        cls = class_of(scope)
        if name.endswith(("_end", "_start")) or (name.endswith("_step") and (cls is None or module_like(index, cls))):
            return []            # Lightning hooks: the framework switches the mode around them
        wrapper_call = name in ("forward", "__call__") and cls is not None and not module_like(index, cls)
        if name == "forward" and not wrapper_call:
            return []
        if wrapper_call or INFERENCE_NAME.search(name) or \
                any(_grad_off_call(index, d, scope) for d in scope.node.decorator_list):
            return [(c, "inference") for c in scope.calls()]
        if EVAL_NAME.search(name) and not has_backward(scope.calls()) and not (
                name.startswith("test_") and (_is_pytest_file(index.path) or _in_test_case(cls)
                                              or any(isinstance(n, ast.Assert) for n in scope.nodes()))):
            return [(c, "evaluation") for c in scope.calls()]
    for node in scope.nodes():
        if isinstance(node, (ast.With, ast.AsyncWith)) and any(
                _grad_off_call(index, item.context_expr, scope) for item in node.items):
            found += [(n, "inference") for n in walk_scope(node.body) if isinstance(n, ast.Call)]
    for region in _eval_regions(scope.body if not scope.is_module else scope.node.body):
        found += [(n, "evaluation") for n in walk_scope(region) if isinstance(n, ast.Call)]
    return found + _runs_after_loading(index, scope) + _global_network_calls(index, scope)


def _runs_after_loading(index: FileIndex, scope: Scope) -> list[tuple[ast.Call, str]]:
    """Code that loads trained weights into a network (``net.load_state_dict(...)``) and then runs it,
    with no ``backward()`` or optimizer ``step()`` anywhere in it, is inference (a predict script's
    ``main()``), whatever its name."""
    calls = scope.calls()
    if _is_pytest_file(index.path) or has_backward(calls) or any(
            isinstance(c.func, ast.Attribute) and c.func.attr == "step" for c in calls):
        return []
    selves = scope.self_names()
    loaded = {}
    for call in calls:
        if isinstance(call.func, ast.Attribute) and call.func.attr == "load_state_dict":
            key = key_of(call.func.value, selves)
            if key is not None:
                loaded.setdefault(key, position(call))
    for node in scope.nodes():
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and _loads_trained(index, node.value):
            key = key_of(node.targets[0], selves)
            if key is not None:
                loaded.setdefault(key, position(node))
    found = []
    for call in calls:
        func = call.func.value if isinstance(call.func, ast.Attribute) and call.func.attr in MODEL_METHODS \
            else call.func
        key = key_of(func, selves)
        if key in loaded and position(call) > loaded[key]:
            found.append((call, "inference"))
    return found


def _in_test_case(cls: ast.ClassDef | None) -> bool:
    return cls is not None and (cls.name.startswith("Test") or any(
        (b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "")).endswith("TestCase") for b in cls.bases))


def _mentions_eval_data(node: ast.AST) -> bool:
    """Evaluation data read by the statement (``out_val = ...`` stores a result, it reads no data)."""
    for sub in ast.walk(node):
        if isinstance(getattr(sub, "ctx", None), ast.Store):
            continue
        name = sub.id if isinstance(sub, ast.Name) else sub.attr if isinstance(sub, ast.Attribute) else None
        if name and EVAL_DATA.search(name):
            return True
    return False


_COMPOUND = (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With, ast.AsyncWith, ast.Try)


def _eval_regions(body: list[ast.stmt]) -> Iterator[list[ast.stmt]]:
    """Statements that evaluate: a loop over evaluation data, or the statements from a use of
    evaluation data to the end of their block; never a region that calls ``backward()``."""
    for i, stmt in enumerate(body):
        if isinstance(stmt, (*FUNCTION_NODES, ast.ClassDef)):
            continue
        header = stmt.iter if isinstance(stmt, (ast.For, ast.AsyncFor)) else \
            stmt.test if isinstance(stmt, ast.While) else None
        if header is not None and _mentions_eval_data(header):
            if not has_backward(walk_scope([stmt])):
                yield [stmt]
                continue
        elif not isinstance(stmt, _COMPOUND) and _mentions_eval_data(stmt):
            region = body[i:]
            if not has_backward(walk_scope(region)):
                yield region
                return
        for block in _blocks(stmt):
            yield from _eval_regions(block)


def _blocks(stmt: ast.stmt) -> list[list[ast.stmt]]:
    if isinstance(stmt, ast.Try):
        return [stmt.body, *[h.body for h in stmt.handlers], stmt.orelse, stmt.finalbody]
    if isinstance(stmt, _COMPOUND):
        return [stmt.body, getattr(stmt, "orelse", [])]
    return []


def _uses(index: FileIndex, scope: Scope) -> Iterator[Use]:
    """Calls that run something model-like, with a key naming it: ("name", x) or ("self", attr)."""
    calls = _inference_calls(index, scope)
    if not calls:
        return
    selves = scope.self_names()
    cls = class_of(scope)
    # Inside an nn.Module, self.<attr> is a submodule: it follows the parent's mode.
    submodules = cls is not None and module_like(index, cls)
    for call, kind in sorted(calls, key=lambda c: position(c[0])):
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr in MODEL_METHODS:
            func = func.value
        own_entry = submodules and scope.cls is cls and bool(INFERENCE_NAME.search(scope.name) or
                                                             EVAL_NAME.search(scope.name))
        if own_entry and isinstance(func, ast.Name) and func.id in selves:
            yield Use(call, SELF_CALL, kind)       # self(x) in a module's own predict()
            continue
        if own_entry and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                and func.value.id in selves and not _is_method(scope, func.attr) and MODEL_ATTR.search(func.attr) \
                and not _attr_evaluated(index, cls, func.attr) \
                and project.has_module_base(project.Symbol(index, cls)):
            yield Use(call, SELF_CALL, kind)       # self.model(x) in a LightningModule's own predict()
            continue
        key = key_of(func, selves)
        if key is not None and key[0] == "self" and not submodules and _is_method(scope, key[1]):
            yield from _through_helper(index, scope, call, key[1], kind)
            continue
        if key is None or (key[0] == "self" and submodules):
            continue
        if key[0] == "name" and _never_a_model(index, key[1]):
            continue
        yield Use(call, key, kind)


def _through_helper(index: FileIndex, scope: Scope, call: ast.Call, name: str, kind: str) -> Iterator[Use]:
    """``self._forward_pass(batch)`` in inference code: the models the helper runs (``self.<attr>(...)``)
    run in inference too, at this call. A helper that switches a model's mode itself is left to it."""
    tracer = Tracer.of(index)
    cls = class_of(scope)
    for helper in index.functions_named(name):
        if helper.cls is not cls or helper is scope:
            continue
        selves = helper.self_names()
        for inner in helper.calls():
            func = inner.func
            if isinstance(func, ast.Attribute) and func.attr in MODEL_METHODS:
                func = func.value
            key = key_of(func, selves)
            if key is None or key[0] != "self" or _is_method(helper, key[1]) or tracer._events(helper, key):
                continue
            yield Use(call, key, kind)


def _attr_evaluated(index: FileIndex, cls: ast.ClassDef, attr: str) -> bool:
    tracer = Tracer.of(index)
    return any(t._evaluated_in(m, ("self", attr)) for t, m in tracer._class_methods(cls))


def _never_a_model(index: FileIndex, name: str) -> bool:
    """Builtins, imported names, functions or classes defined in the file, and names of a class
    (``cls = MODELS[name]; model = cls(**cfg)``: calling it builds a network, it runs none) are not models."""
    return (name in BUILTINS or name in index.aliases or name in index.imports or name in index.classes
            or bool(index.functions_named(name)) or bool(CONSTRUCTOR_NAME.search(name)))


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
            if key_of(value, selves) == key:
                return True
    return False


def _is_method(scope: Scope, name: str) -> bool:
    cls = class_of(scope)
    return cls is not None and any(isinstance(s, FUNCTION_NODES) and s.name == name for s in cls.body)
