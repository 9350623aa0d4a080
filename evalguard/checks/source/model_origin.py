"""Where a model comes from and which mode it is in at a call: the tracer behind EG106.

``Tracer.judge(scope, use)`` answers "train", "eval" or "unknown" for one model call in inference or
evaluation code (see ``missing_eval`` for which calls those are). It reads the function's own
``.eval()``/``.train()`` calls in source order first, then follows the model back to where it was
created, across the files of the project (``project.resolve``). Nothing is imported or run.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from evalguard.checks.source import project
from evalguard.checks.source.index import (
    FileIndex,
    Scope,
    call_arg,
    calls_in,
    item_name,
    module_like,
    spelled,
)

TRAINING_SOURCES = {"torch.load", "torch.jit.load", "torch.hub.load", "timm.create_model"}
MODEL_CLASS_NAME = re.compile(r"(Net|Network|Model|Classifier|Regressor|Encoder|Decoder|Transformer|Detector|"
                              r"CNN|RNN|LSTM|GRU|MLP|ResNet|ViT|Module)\d*$")
# Methods that return the same module (or one in the same mode).
SAME_MODULE = {"to", "cuda", "cpu", "half", "float", "double", "bfloat16", "requires_grad_",
               "share_memory", "to_empty", "type", "apply", "zero_grad"}
MODEL_METHODS = {"forward", "generate", "encode_image", "encode_text"}     # CLIP's encoders run the network
#: Calls that return their first argument's module (or a wrapper running it in its mode).
WRAPPERS = {"torch.compile", "torch.jit.script", "torch.jit.trace", "torch.nn.DataParallel",
            "torch.nn.parallel.DistributedDataParallel", "copy.deepcopy", "copy.copy"}
#: Calls (by their last name) that return a wrapper running the module passed first.
WRAPPER_CALLS = {"prepare", "prepare_model", "get_peft_model", "wrap", "compile", "DataParallel",
                 "DistributedDataParallel"}
#: torch.nn classes whose output depends on the mode (a Linear or a loss does not).
TORCH_NN_MODE_DEPENDENT = project.MODE_LAYERS | {"torch.nn.Sequential", "torch.nn.ModuleDict"}
MAX_DEPTH = 10
GRAD_OFF_NAMES = ("no_grad", "inference_mode", "set_grad_enabled")
#: Names and comments that say the training mode at inference is on purpose.
DELIBERATE = re.compile(r"\bmc\b|mc_|_mc\b|monte|mcdropout|mc.dropout|bayes|uncertaint|stochastic|ensemble|"
                        r"recalib|calibrat|\bbn\b|bn_|_bn\b|batchnorm|batch.norm|running.stat|bn.stat|swa",
                        re.IGNORECASE)
#: Calls that collect the outputs of several passes.
AGGREGATE = re.compile(r"(^|\.)(stack|cat|mean|var|std|append|extend|vstack|hstack|concatenate)$")
#: Parameters named like a network.
STRICT_MODEL_NAME = re.compile(r"^_?(model|net|network|classifier|encoder|backbone)$|_(model|net)$|^(model|net)_",
                               re.IGNORECASE)
#: Classes that hold a model handed to them: their ``__init__`` callers are read across the project.
HOLDER_CLASS = re.compile(r"(Predictor|Evaluator|Tester|Trainer|Runner|Engine|Inferencer|Validator|Wrapper|Pipeline|"
                          r"Server|Handler|Service|Solver|Agent|Learner|Experiment|Model|Net|Classifier)\w*$")
#: Functions whose whole job is evaluation or inference (a plain no_grad block is not enough).
INFERENCE_FUNCTION = re.compile(r"^_*(predict|infer|inference|evaluate|evaluation|validate|validation|test|"
                                r"eval|run_eval|run_test|run_inference)(_|$)|_(predict|inference|evaluate|"
                                r"evaluation|validate|validation|test|eval)$"
                                r"|(^|_)(embed|embedding|embeddings|prediction|predictions)(_|$)",
                                re.IGNORECASE)
#: Functions a library offers for prediction (its callers are its users, outside the project).
PREDICTION_FUNCTION = re.compile(r"^(predict|infer|inference|run_inference|classify)(_|$)|_(predict|inference)$"
                                 r"|(^|_)(embed|embedding|embeddings|prediction|predictions)(_|$)", re.IGNORECASE)
#: Attributes of a holder class named like the network it holds (``self._model``, skorch's ``self.module_``).
HELD_NETWORK = re.compile(r"^_*(model|net|network|classifier|encoder|backbone|module)_?$|_(model|net)$",
                          re.IGNORECASE)
SELF_CALL = ("self", "__call__")
MODEL_NAME = re.compile(r"model|net|classifier|encoder|decoder|backbone|detector|generator|discriminator|"
                        r"segment|cnn|rnn|lstm|vae|unet|resnet|bert|transformer", re.IGNORECASE)


#: Calls outside the project whose result is a network: helpers named like model builders/loaders.
NETWORK_FACTORY = re.compile(r"^_*(build|load|create|get|make|init|instantiate|construct)(_\w*)?_?(model|net|network|"
                             r"backbone|encoder|detector|classifier|segmentor|arch)s?(_\w*)?$|^instantiate$",
                             re.IGNORECASE)
#: Names of a class or constructor taken from a registry: calling one builds a network, it runs none.
CONSTRUCTOR_NAME = re.compile(r"^_*(cls|klass|clazz|ctor|constructor|factory|builder|arch)$|_(cls|class|klass|ctor|"
                              r"constructor|factory|builder)$", re.IGNORECASE)
#: Config systems that build whatever class the config names (a network, in model code).
CONFIG_BUILDERS = frozenset({"hydra.utils.instantiate", "hydra.utils.call", "mmengine.registry.build_from_cfg",
                             "mmcv.utils.build_from_cfg", "detectron2.config.instantiate"})
#: Packages outside the project whose constructors return networks (in training mode).
NETWORK_PACKAGES = ("torchvision.models.", "timm.", "open_clip.", "segmentation_models_pytorch.", "torch.hub.",
                    "pretrainedmodels.", "efficientnet_pytorch.", "monai.networks.", "torchaudio.models.")
#: Methods only an nn.Module has (a tensor or a plain function has none of them).
NETWORK_METHODS = frozenset({"parameters", "named_parameters", "load_state_dict", "state_dict", "named_modules",
                             "modules", "children", "named_children", "register_forward_hook",
                             "register_forward_pre_hook", "zero_grad", "buffers", "named_buffers"})
#: Module methods that wrappers call on a layer of the network (``self.model.layer4.register_forward_hook``).
HOOK_METHODS = frozenset({"register_forward_hook", "register_forward_pre_hook", "named_modules", "modules",
                          "parameters", "named_parameters"})
#: A container of network constructors: ``models.__dict__[name](...)``, ``MODELS[name](...)``.
REGISTRY_NAME = re.compile(r"models?$|archs?$|networks?$|nets?$|registry$|backbones?$", re.IGNORECASE)


@dataclass(frozen=True)
class Origin:
    state: str                    # "eval" | "train" | "static" (not a network / nothing to switch) | "unknown"
    node: ast.AST | None = None   # where the training-mode model was created
    text: str = ""
    #: "high": the class is resolved and holds mode-dependent layers; "medium": a network of unresolved class
    confidence: str = "high"
    #: the attribute of a plain (non-Module) wrapper that holds the network: the finding names ``obj.<held>``
    held: str = ""

    def unsure(self) -> Origin:
        return Origin(self.state, self.node, self.text, "medium", self.held) if self.state == "train" else self

    @staticmethod
    def combine(origins: list[Origin]) -> Origin:
        for state in ("eval", "train", "static"):
            for origin in origins:
                if origin.state == state:
                    return origin
        return UNKNOWN_ORIGIN


UNKNOWN_ORIGIN = Origin("unknown")
EVAL_ORIGIN = Origin("eval")
STATIC_ORIGIN = Origin("eval", None, "no mode-dependent layer")   # nothing to switch: as good as eval
NOT_A_NETWORK = Origin("static", None, "not an nn.Module")         # a resolved class that is no module


@dataclass(frozen=True)
class Use:
    """One model call in inference code: the call, the model's key, and the kind of code."""

    call: ast.Call
    key: tuple
    kind: str                     # "inference" | "evaluation"


def key_of(node: ast.AST, selves: set[str]):
    if isinstance(node, ast.Name) and node.id not in selves:
        return ("name", node.id)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id not in selves \
            and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        return ("name", item_name(node))             # cfg["net"]: an entry of a dict, as a name
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in selves:
        return ("self", node.attr)
    return None


def class_of(scope: Scope) -> ast.ClassDef | None:
    while scope is not None:
        if scope.cls is not None:
            return scope.cls
        scope = scope.parent
    return None


def _receiver_key(node: ast.AST, selves: set[str]):
    """The model a method chain starts from: ``model.to(d).eval`` -> ("name", "model")."""
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute) and key_of(node, selves) is None:
            node = node.value
        else:
            return key_of(node, selves)


def _is_eval_call(index: FileIndex, call: ast.Call, scope: Scope) -> bool:
    if not isinstance(call.func, ast.Attribute):
        return False
    if call.func.attr == "eval" and not call.args:
        return True
    if call.func.attr == "train":
        mode = call_arg(call, 0, "mode")
        return mode is not None and index.value(mode, scope) is False
    return False



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


def _asserts_eval(test: ast.AST, key, selves: set[str]) -> bool:
    """``assert not model.training`` / ``assert model.training is False``: the mode is checked."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        target = test.operand
    elif isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.comparators[0], ast.Constant) \
            and test.comparators[0].value is False and isinstance(test.ops[0], (ast.Is, ast.Eq)):
        target = test.left
    else:
        return False
    return isinstance(target, ast.Attribute) and target.attr == "training" and (
        key_of(target.value, selves) == key or (key == SELF_CALL and isinstance(target.value, ast.Name)
                                                 and target.value.id in selves))


def _registry_get(node: ast.AST) -> bool:
    """``MODEL_REGISTRY.get(name)``: a lookup in a container named like a registry of networks."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
        and bool(node.args) and bool(REGISTRY_NAME.search(spelled(node.func.value).rsplit(".", 1)[-1]))


def position(node: ast.AST) -> tuple[int, int]:
    return node.lineno, node.col_offset


def has_backward(calls) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "backward"
               for n in calls)


SUBMODULE_ITERATORS = {"children", "named_children", "modules", "named_modules"}


def _submodule_loop(scope: Scope, name: str) -> bool:
    for node in scope.nodes():
        if isinstance(node, (ast.For, ast.AsyncFor)) and isinstance(node.iter, ast.Call) \
                and isinstance(node.iter.func, ast.Attribute) and node.iter.func.attr in SUBMODULE_ITERATORS \
                and any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node.target)):
            return True
    return False


def _feeds_call(loop: ast.AST, call: ast.Call) -> bool:
    """Whether the loop's variables reach the call's arguments (each pass sees other data)."""
    targets = [loop.target] if isinstance(loop, (ast.For, ast.AsyncFor)) else \
        [g.target for g in loop.generators] if isinstance(loop, (ast.ListComp, ast.GeneratorExp)) else []
    names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name) and n.id != "_"}
    used = {n.id for a in [*call.args, *(k.value for k in call.keywords)] for n in ast.walk(a) if isinstance(n, ast.Name)}
    return bool(names & used)


def _turns_grad_off(scope: Scope) -> bool:
    return any(isinstance(c.func, (ast.Attribute, ast.Name)) and spelled(c.func).endswith(GRAD_OFF_NAMES)
               for c in scope.calls())


def _is_param(scope: Scope, name: str) -> bool:
    return name in scope.params and name not in scope.assigns


def key_name(key) -> str:
    return "self" if key == SELF_CALL else key[1]


class Tracer:
    """Origins of models in one file; other files of the project get their own tracer."""

    def __init__(self, index: FileIndex):
        self.index = index
        self._memo: dict = {}
        self._sites: dict | None = None
        self._methods: dict[int, list[Scope]] = {}
        for scope in index.scopes:
            if scope.cls is not None:
                self._methods.setdefault(id(scope.cls), []).append(scope)

    @staticmethod
    def of(index: FileIndex) -> Tracer:
        tracer = getattr(index, "_tracer", None)
        if tracer is None:
            tracer = index._tracer = Tracer(index)
        return tracer

    # the verdict for one call ----------------------------------------------------------------
    def judge(self, scope: Scope, use: Use) -> Origin:
        before = self.mode_before(scope, use.key, use.call)
        if before is not None:
            state, node = before
            if state == "eval":
                return EVAL_ORIGIN
            return self._explicit_train(scope, use, node)
        if use.key == SELF_CALL:
            return self._self_call(scope)
        origin = self.origin_of_key(scope, use.key, 0)
        if origin.state == "unknown" and MODEL_NAME.search(key_name(use.key)):
            origin = self._assumed(use)
        if origin.state == "unknown":
            origin = self._used_as_network(scope, use)
        if origin.state == "train" and use.key[0] == "self" and class_of(scope) is not None and any(
                tracer._evaluated_in(m, use.key) for tracer, m in self._subclass_methods(class_of(scope))):
            return EVAL_ORIGIN        # read last: a subclass's select() evaluates the model before using it
        return origin

    def _explicit_train(self, scope: Scope, use: Use, node: ast.Call) -> Origin:
        """``.train()`` before the inference: the bug, unless the function trains (it forgot to switch
        back: reported) or the mode is handled on purpose (MC dropout, BatchNorm recalibration)."""
        traced = self._self_call(scope) if use.key == SELF_CALL else self.origin_of_key(scope, use.key, 0)
        if traced is STATIC_ORIGIN or traced.state == "static":
            return UNKNOWN_ORIGIN                # nothing in it depends on the mode
        confidence = "high" if traced.state == "train" and traced.confidence == "high" else "medium"
        if has_backward(scope.calls()):      # a training function that forgot to switch back
            return Origin("train", node, f"{spelled(node.func)}() earlier in {scope.name}()", confidence)
        if self._deliberate_train(scope, use, node):
            return UNKNOWN_ORIGIN
        return Origin("train", node, f"{spelled(node.func)}() earlier in {scope.name}(), which trains nothing",
                      confidence)

    def _deliberate_train(self, scope: Scope, use: Use, train: ast.Call) -> bool:
        """Monte Carlo dropout (several stochastic passes aggregated, or a name/comment saying so),
        BatchNorm recalibration, or a mode restored afterwards (``model.train(was_training)``)."""
        if DELIBERATE.search(scope.name) or DELIBERATE.search(self._comments(scope)):
            return True
        if any(isinstance(n, ast.Expr) and n.value is use.call for n in scope.nodes()):
            return True                          # the output is thrown away: run for BatchNorm statistics
        for _, state, event in self._events(scope, use.key):
            if state == "train" and event is not train and event.args and \
                    self.index.value(event.args[0], scope) is not True:
                return True                      # model.train(was_training): the mode is restored
        for loop in scope.nodes():
            if not isinstance(loop, (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.GeneratorExp)) or \
                    not any(n is use.call for n in ast.walk(loop)) or _feeds_call(loop, use.call):
                continue                         # passes over different batches are plain inference
            if isinstance(loop, (ast.ListComp, ast.GeneratorExp)):
                return True                      # [model(x) for _ in range(n)]: the passes are collected
            end = getattr(loop, "end_lineno", loop.lineno) + 3   # collected in the loop or right after it
            if any(AGGREGATE.search(spelled(c.func)) for c in scope.calls() if loop.lineno <= c.lineno <= end):
                return True                      # several stochastic passes over the same input, collected
        return False

    def _comments(self, scope: Scope) -> str:
        text = getattr(self.index, "text", None)
        if not text or scope.is_module:
            return ""
        lines = text.splitlines()[scope.node.lineno - 1:getattr(scope.node, "end_lineno", scope.node.lineno)]
        return " ".join(line.split("#", 1)[1] for line in lines if "#" in line)

    def _used_as_network(self, scope: Scope, use: Use) -> Origin:
        """An object of untraceable origin that is used as a network: module-only methods on it, or a
        parameter named like a model run by a function named like evaluation or inference."""
        if use.key[0] == "name" and _submodule_loop(scope, use.key[1]):
            return UNKNOWN_ORIGIN    # for name, module in model.named_children(): a layer, run on its own
        if use.key[0] == "name" and _is_param(scope, use.key[1]) and not (
                INFERENCE_FUNCTION.search(scope.name) or self._all_call_sites(scope)):
            return UNKNOWN_ORIGIN    # a utility handed any module by callers unseen: they decide its mode
        reason = self._network_methods(scope, use.key)
        if reason is None and use.key[0] == "name" and STRICT_MODEL_NAME.search(use.key[1]) \
                and _is_param(scope, use.key[1]) and INFERENCE_FUNCTION.search(scope.name) \
                and self._all_call_sites(scope):
            reason = (f"{scope.name}() is called with a model for {use.key[1]} elsewhere in the project and runs it "
                      "on its data")
        if reason is None:
            reason = self._library_entry(scope, use)
        if reason is None:
            return UNKNOWN_ORIGIN
        return Origin("train", None, reason, "medium")

    def _library_entry(self, scope: Scope, use: Use) -> str | None:
        """A public prediction entry point (``predict_instance``, ``get_embedding``) of a library that
        runs the network it was handed -- a parameter, or an attribute a holder class received -- and
        never puts it in eval mode: its callers are the library's users, so the function itself is the
        inference context."""
        inherited = id(scope) in self.index.__dict__.get("_inherited", ())
        if not inherited and (scope.name.startswith("_") or not PREDICTION_FUNCTION.search(scope.name)):
            return None
        if scope.name.endswith("_step"):
            return None          # a framework's hook (a trainer's prediction_step): its loop sets the mode
        kind, name = use.key
        where = f"{scope.name}() is called from inference code" if inherited else \
            f"{scope.name}() is a prediction entry point"
        if kind == "name" and _is_param(scope, name) and STRICT_MODEL_NAME.search(name) \
                and not self._loader_evaluates():
            return f"{where} and runs the {name} it is handed"
        if kind == "self" and HELD_NETWORK.search(name) and class_of(scope) is not None \
                and not module_like(self.index, class_of(scope)):
            return f"{where} and runs the network {class_of(scope).name} holds in self.{name}"
        return None

    def _network_methods(self, scope: Scope, key) -> str | None:
        if key[0] == "name" and key[1].endswith('"]'):
            return self._entry_methods(key[1])
        if key[0] == "self":
            cls = class_of(scope)
            scopes = [m for _, m in self._class_methods(cls)] if cls is not None else []
        else:
            scopes, search = [], scope
            while search is not None:
                scopes.append(search)
                if key[1] in search.params or key[1] in search.assigns:
                    break
                search = search.parent
        for where in scopes:
            selves = where.self_names()
            for call in where.calls():
                func = call.func
                if isinstance(func, ast.Attribute) and (key_of(func.value, selves) == key or (
                        func.attr in HOOK_METHODS and _receiver_key(func.value, selves) == key)) and \
                        func.attr in NETWORK_METHODS | {"to", "cuda"}:
                    # a tensor moves too, but is never called: a called object with .to() is a module
                    return f"{key_name(key) if key[0] == 'name' else 'self.' + key[1]}.{func.attr}() is called on it"
        return None

    def _entry_methods(self, name: str) -> str | None:
        """A dict entry (``cfg["net"]``): module methods called on the same entry anywhere in the file
        make it a network, unless an ``.eval()`` on that entry is seen too."""
        entry = name[name.index("["):]
        found = None
        for _, call in calls_in(self.index):
            func = call.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Subscript) \
                    and isinstance(func.value.slice, ast.Constant) and f'["{func.value.slice.value}"]' == entry:
                if _is_eval_call(self.index, call, self.index.module):
                    return None
                if func.attr in NETWORK_METHODS | {"to", "cuda"}:
                    found = f"{spelled(func)}() is called on the same entry"
        return found

    def _loader_evaluates(self) -> bool:
        """A function of this file returns a model it put in eval mode (``return torch.load(p).eval()``,
        or ``model.eval(); return model``): the file's own loading path handles the mode."""
        if "loader_evaluates" not in self._memo:
            found = False
            for scope in self.index.scopes:
                selves = scope.self_names()
                for node in scope.nodes():
                    if isinstance(node, ast.Return) and node.value is not None and (
                            _chain_has_eval(self.index, node.value, scope) or (
                                key_of(node.value, selves) is not None
                                and self._evaluated_in(scope, key_of(node.value, selves)))):
                        found = True
            self._memo["loader_evaluates"] = found
        return self._memo["loader_evaluates"]

    def _self_call(self, scope: Scope) -> Origin:
        cls = class_of(scope)
        if any(self._evaluated_in(m, SELF_CALL) for m in self._methods.get(id(cls), [])):
            return EVAL_ORIGIN
        verdict = project.mode_dependent(project.Symbol(self.index, cls))
        if verdict is False:
            return STATIC_ORIGIN
        if verdict is True:
            return Origin("train", None, f"{cls.name} holds Dropout/BatchNorm-like layers and {scope.name}() runs "
                                         "it without self.eval()")
        if not project.is_module_class(project.Symbol(self.index, cls), by_forward=False):
            return UNKNOWN_ORIGIN     # a forward() alone (a pipeline, a runner) does not make an nn.Module
        return Origin("train", None, f"{cls.name} is an nn.Module whose layers are not all known here (a base or "
                                     f"submodule outside this project, or a subclass's) and {scope.name}() runs it "
                                     "without self.eval()", "medium")

    def _assumed(self, use: Use) -> Origin:
        """An untraceable model in evaluation code of a training file, or next to a loader that
        returns a training-mode model, is taken to be in training mode."""
        if use.kind == "evaluation" and self.file_trains():
            return Origin("train", None, "it arrives from the training code of this file, which calls backward()")
        return self.loader_origin()

    def file_trains(self) -> bool:
        if "trains" not in self._memo:
            self._memo["trains"] = any(has_backward(s.calls()) for s in self.index.scopes)
        return self._memo["trains"]

    def loader_origin(self) -> Origin:
        """The first function of the file that returns a training-mode model, as an origin."""
        if "loader" not in self._memo:
            self._memo["loader"] = UNKNOWN_ORIGIN
            found = UNKNOWN_ORIGIN
            for scope in self.index.scopes:
                if scope.is_module or scope.is_class_body or found.state == "train":
                    continue
                for node in scope.nodes():
                    if isinstance(node, ast.Return) and node.value is not None:
                        origin = self._origin_of_value(scope, node.value, 0)
                        if origin.state == "train":
                            found = Origin("train", origin.node, f"{scope.name}() returns {origin.text}")
                            break
            self._memo["loader"] = found
        return self._memo["loader"]

    # modes set in a function, in source order --------------------------------------------------
    def mode_before(self, scope: Scope, key, call: ast.AST):
        """("eval"|"train", node) for the last mode switch of the model before ``call`` in ``scope``."""
        limit, last = position(call), None
        for where, state, node in self._events(scope, key):
            if where >= limit:
                break
            last = (state, node)
        return last

    def _events(self, scope: Scope, key) -> list:
        """Every mode switch of the model in ``scope``, in source order (computed once)."""
        memo_key = ("events", id(scope), key)
        if memo_key not in self._memo:
            self._memo[memo_key] = []            # recursion through helpers: none (yet)
            keys = [key] + self._wrapping_aliases(scope, key)
            found = [(position(n), self._mode_event(scope, n, k), n) for n in scope.calls() for k in keys]
            found += [(position(n), "eval", n) for n in scope.nodes()
                      if isinstance(n, ast.Assert) and _asserts_eval(n.test, key, scope.self_names())]
            self._memo[memo_key] = sorted((e for e in found if e[1] is not None), key=lambda e: e[0])
        return self._memo[memo_key]

    def _wrapping_aliases(self, scope: Scope, key) -> list:
        """Names bound in ``scope`` to a wrapper of the model (``wrapped = torch.compile(net)``,
        ``nn.DataParallel(net)``, ``accelerator.prepare(net)``, ``get_peft_model(net, cfg)``): the same
        network, so ``wrapped.eval()`` puts ``net`` in eval mode too."""
        if key[0] != "name":
            return []
        aliases = []
        for name, values in scope.assigns.items():
            if name != key[1] and any(self._wraps(v, key[1]) for v in values):
                aliases.append(("name", name))
        return aliases

    def _wraps(self, value: ast.AST, name: str) -> bool:
        if not isinstance(value, ast.Call) or not value.args or not isinstance(value.args[0], ast.Name) \
                or value.args[0].id != name:
            return False
        func = value.func
        short = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        return (self.index.qualname(func) or "") in WRAPPERS or short in WRAPPER_CALLS or short[:1].isupper()

    def _mode_event(self, scope: Scope, node: ast.Call, key) -> str | None:
        selves = scope.self_names()
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("eval", "train"):
            receiver = _receiver_key(func.value, selves)
            on_self = isinstance(func.value, ast.Name) and func.value.id in selves and key[0] == "self" \
                and not self._own_eval_method(scope)
            if receiver == key or on_self:
                return "eval" if _is_eval_call(self.index, node, scope) else "train"
        if self._passes_to_evaluating_helper(scope, node, key):
            return "eval"
        return None

    def _own_eval_method(self, scope: Scope) -> bool:
        """A class that is no nn.Module and defines ``eval``/``train`` itself (a trainer's validation
        routine): ``self.eval()`` there says nothing about the mode of ``self.model``."""
        cls = class_of(scope)
        if cls is None or project.is_module_class(project.Symbol(self.index, cls)):
            return False
        return any(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.name in ("eval", "train")
                   for s in cls.body)

    def _evaluated_in(self, scope: Scope, key) -> bool:
        return any(state == "eval" for _, state, _ in self._events(scope, key))

    def _passes_to_evaluating_helper(self, scope: Scope, node: ast.Call, key) -> bool:
        if not node.args and not node.keywords:
            return False
        selves = scope.self_names()
        for position_, arg in enumerate(node.args):
            if key_of(arg, selves) == key and self._helper_evaluates(scope, node, position_, None):
                return True
        for kw in node.keywords:
            if kw.arg and key_of(kw.value, selves) == key and self._helper_evaluates(scope, node, None, kw.arg):
                return True
        return False

    def _helper_evaluates(self, scope: Scope, call: ast.Call, position_, keyword) -> bool:
        for tracer, helper, offset in self._callees(scope, call):
            params = helper.params
            name = keyword if keyword is not None else (
                params[position_ + offset] if position_ + offset < len(params) else None)
            if name in params and tracer._evaluated_in(helper, ("name", name)):
                return True
        return False

    def _callees(self, scope: Scope, call: ast.Call) -> list[tuple[Tracer, Scope, int]]:
        """Functions a call may reach, in this file or imported from the project, with the
        parameter offset (1 for methods via self)."""
        func = call.func
        if isinstance(func, ast.Name):
            local = [(self, s, 0) for s in self.index.functions_named(func.id) if s.cls is None]
            if local or func.id not in self.index.imports:
                return local
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                and func.value.id in scope.self_names():
            cls = class_of(scope)
            return [(self, s, 1) for s in self.index.functions_named(func.attr) if s.cls is cls]
        elif not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                  and func.value.id in self.index.imports):
            return []
        symbol = project.resolve(self.index, func)
        if symbol is None or symbol.is_class or symbol.scope is None:
            return []
        return [(Tracer.of(symbol.index), symbol.scope, 0)]

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
            self._memo[memo_key] = any(
                self._evaluated_in(s, ("name", name)) for s in self.index.scopes
                if s.is_module or (name not in s.assigns and name not in s.params))
        return self._memo[memo_key]

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
        position_ = scope.params.index(name)
        offset = 1 if scope.cls is not None else 0
        origins = []
        for tracer, caller, call in self._all_call_sites(scope):
            arg = call_arg(call, position_ - offset, name)
            if arg is None:
                continue
            key = key_of(arg, caller.self_names())
            before = tracer.mode_before(caller, key, call) if key else None
            if before is not None:
                state, node = before
                origins.append(EVAL_ORIGIN if state == "eval" else
                               Origin("train", node, f"{spelled(node.func)}() in {caller.name}() before the call"))
                continue
            origin = tracer._origin_of_value(caller, arg, depth + 1)
            if origin.state == "unknown" and key is not None and tracer._trains(caller, key):
                origin = Origin("train", call, f"{caller.name}() trains {key_name(key)} (backward()) and then passes it",
                                "medium")
            origins.append(origin)
        if not origins or any(o.state == "unknown" for o in origins):
            return Origin.combine([o for o in origins if o.state in ("eval", "static")])
        return Origin.combine(origins)

    def _trains(self, scope: Scope, key) -> bool:
        """The function runs the object and calls backward(): the object is a network in training mode."""
        if not has_backward(scope.calls()):
            return False
        selves = scope.self_names()
        return any(key_of(c.func, selves) == key for c in scope.calls())

    def _all_call_sites(self, target: Scope) -> list[tuple[Tracer, Scope, ast.Call]]:
        """Call sites of a function (or of a class, for its ``__init__``) in this file and, for
        top-level definitions, in the other files of the project."""
        memo_key = ("sites", id(target))
        if memo_key not in self._memo:
            self._memo[memo_key] = self._find_call_sites(target)
        return self._memo[memo_key]

    def _find_call_sites(self, target: Scope) -> list[tuple[Tracer, Scope, ast.Call]]:
        sites = [(self, caller, call) for caller, call in self._call_sites(target)]
        cls = target.cls
        if not (HOLDER_CLASS.search(cls.name) if cls is not None else
                INFERENCE_FUNCTION.search(target.name) or _turns_grad_off(target)):
            return sites       # other files are read only for evaluation/inference code and model holders
        if cls is not None and target.name == "__init__":
            defined, name = cls, cls.name
            sites += [(self, caller, call) for caller in self.index.scopes for call in caller.calls()
                      if isinstance(call.func, ast.Name) and call.func.id == name]
        elif target.cls is None and target.parent is self.index.module:
            defined, name = target.node, target.name
        else:
            return sites
        if self.index.classes.get(name, defined) is not defined and defined is cls:
            return sites
        for other, caller, call in project.callers(self.index, defined, name):
            sites.append((Tracer.of(other), caller, call))
        return sites

    def _call_sites(self, target: Scope) -> list[tuple[Scope, ast.Call]]:
        if self._sites is None:     # one pass over the file: callee -> call sites
            self._sites = {}
            for scope in self.index.scopes:
                for node in scope.calls():
                    func = node.func
                    if isinstance(func, ast.Name) or (isinstance(func, ast.Attribute) and isinstance(
                            func.value, ast.Name) and func.value.id in scope.self_names()):
                        for tracer, callee, _ in self._callees(scope, node):
                            if tracer is self:
                                self._sites.setdefault(id(callee), []).append((scope, node))
        return self._sites.get(id(target), [])

    # attributes ---------------------------------------------------------------------------
    def _class_methods(self, cls: ast.ClassDef, depth: int = 0) -> list[tuple[Tracer, Scope]]:
        """Methods of the class and of its bases defined in the project (other files too)."""
        found = [(self, m) for m in self._methods.get(id(cls), [])]
        if depth < 4:
            for base in project.base_symbols(project.Symbol(self.index, cls)):
                found += Tracer.of(base.index)._class_methods(base.node, depth + 1)
        return found

    def _subclass_methods(self, cls: ast.ClassDef) -> list[tuple[Tracer, Scope]]:
        """Methods of the classes of the project derived from ``cls`` (a subclass's ``select()`` that
        calls ``self.model.eval()`` before the base's ``get_embedding()`` handles the mode)."""
        memo_key = ("subclasses", id(cls))
        if memo_key not in self._memo:
            found = []
            for other in project.files_naming(self.index, cls.name):
                tracer = Tracer.of(other)
                for node in other.classes.values():
                    if node is not cls and any(base.node is cls or (
                            base.index.path == self.index.path and base.node.lineno == cls.lineno)
                            for base in project.base_symbols(project.Symbol(other, node))):
                        found += [(tracer, m) for m in tracer._methods.get(id(node), [])]
            self._memo[memo_key] = found
        return self._memo[memo_key]

    def _origin_of_attr(self, scope: Scope, attr: str, depth: int) -> Origin:
        cls = class_of(scope)
        if cls is None:
            return UNKNOWN_ORIGIN
        methods = self._class_methods(cls)
        if any(tracer._evaluated_in(m, ("self", attr)) for tracer, m in methods):
            return EVAL_ORIGIN
        origins = []
        for tracer, method in methods:
            selves = method.self_names()
            for node in method.nodes():
                if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    if any(key_of(t, selves) == ("self", attr) for t in targets):
                        if _receiver_key(node.value, selves) == ("self", attr):
                            if _chain_has_eval(tracer.index, node.value, method):
                                return EVAL_ORIGIN
                            continue
                        origins.append(tracer._origin_of_value(method, node.value, depth + 1))
        return Origin.combine(origins)

    # values -------------------------------------------------------------------------------
    def _origin_of_value(self, scope: Scope, value: ast.AST, depth: int) -> Origin:
        if depth > MAX_DEPTH:
            return UNKNOWN_ORIGIN
        if isinstance(value, ast.IfExp):          # m.cuda() if gpu else m.cpu()
            return Origin.combine([self._origin_of_value(scope, v, depth + 1) for v in (value.body, value.orelse)])
        if isinstance(value, ast.BoolOp):
            return Origin.combine([self._origin_of_value(scope, v, depth + 1) for v in value.values])
        if _chain_has_eval(self.index, value, scope):
            return EVAL_ORIGIN
        selves = scope.self_names()
        while isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) \
                and value.func.attr in SAME_MODULE:
            value = value.func.value
        key = key_of(value, selves)
        if key is not None:
            return self.origin_of_key(scope, key, depth + 1)
        if isinstance(value, ast.Subscript):       # engine.model_parts[0], self.models[name]: a container of networks
            label = spelled(value.value).rsplit(".", 1)[-1]
            if MODEL_NAME.search(label):
                return Origin("train", value, f"{spelled(value)}, an entry of {label}", "medium")
        if not isinstance(value, ast.Call):
            return UNKNOWN_ORIGIN
        return self._origin_of_call(scope, value, depth)

    def _origin_of_call(self, scope: Scope, call: ast.Call, depth: int) -> Origin:
        """Memoised per call and depth: factories whose returns call factories (or themselves)
        would otherwise be followed once per path, exponentially in ``MAX_DEPTH``."""
        memo_key = ("call", id(scope), id(call), depth)
        if memo_key not in self._memo:
            self._memo[memo_key] = self._call_origin(scope, call, depth)
        return self._memo[memo_key]

    def _call_origin(self, scope: Scope, call: ast.Call, depth: int) -> Origin:
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr == "from_pretrained":
            return EVAL_ORIGIN                      # transformers/diffusers return eval-mode models
        name = self.index.qualname(func) or ""
        text = spelled(func) + "(...)"
        if name in WRAPPERS and call.args:
            return self._origin_of_value(scope, call.args[0], depth + 1)
        if name in TRAINING_SOURCES or name.startswith("torchvision.models."):
            return Origin("train", call, text, "high" if name.startswith(("torchvision.", "timm.")) else "medium")
        callees = self._callees(scope, call)
        if callees:                                 # a factory: follow its returns
            origins = []
            for tracer, factory, _ in callees:
                for node in factory.nodes():
                    if isinstance(node, ast.Return) and node.value is not None:
                        origins.append(tracer._origin_of_value(factory, node.value, depth + 1))
            return Origin.combine(origins)
        outside = self._network_source(self._through_alias(scope, call), name)
        if outside is not None:
            return Origin("train", call, outside, "medium")
        return self._instantiated(call, name, text, depth, scope)

    @staticmethod
    def _through_alias(scope: Scope, call: ast.Call) -> ast.Call:
        """``cls = MODELS[name]; cls(**cfg)``: the call of a class-named name bound only to a registry
        lookup (a subscript, ``REGISTRY.get(name)``, ``getattr(module, name)``) is that lookup's call."""
        func = call.func
        values = scope.assigns.get(func.id, []) if isinstance(func, ast.Name) and CONSTRUCTOR_NAME.search(func.id) \
            else []
        if len(values) != 1 or not (isinstance(values[0], ast.Subscript) or _registry_get(values[0]) or (
                isinstance(values[0], ast.Call) and isinstance(values[0].func, ast.Name)
                and values[0].func.id == "getattr")):
            return call
        return ast.copy_location(ast.Call(func=values[0], args=call.args, keywords=call.keywords), call)

    def _network_source(self, call: ast.Call, qualname: str) -> str | None:
        """A network built outside the project: a model package's constructor, a builder or loader
        named like one (``build_model``, ``load_net``, ``instantiate``), or a registry entry
        (``models.__dict__[arch](...)``, ``MODELS[name](...)``)."""
        func = call.func
        if isinstance(func, ast.Call) and isinstance(func.func, ast.Name) and func.func.id == "getattr" \
                and func.args:                  # getattr(torchvision.models, name)(...)
            func = ast.Subscript(value=func.args[0], slice=func.args[1] if len(func.args) > 1 else func.args[0])
            ast.copy_location(func, call)
        if _registry_get(func):                 # MODEL_REGISTRY.get(name)(**cfg)
            func = ast.copy_location(ast.Subscript(value=func.func.value, slice=func.args[0]), call)
        if isinstance(func, ast.Subscript):
            container = func.value
            if isinstance(container, ast.Attribute) and container.attr == "__dict__":
                container = container.value
            label = spelled(container).rsplit(".", 1)[-1]
            qualified = self.index.qualname(container) or self.index.aliases.get(getattr(container, "id", ""), "")
            if REGISTRY_NAME.search(label) or (qualified + ".").startswith(NETWORK_PACKAGES):
                return f"{spelled(call.func)}(...), a network registry entry"
            return None
        if isinstance(func, ast.Attribute) and func.attr in ("build", "build_from_cfg", "create", "instantiate") \
                and REGISTRY_NAME.search(spelled(func.value).rsplit(".", 1)[-1]) \
                and project.resolve(self.index, func) is None:
            return f"{spelled(func)}(...), a network registry's builder"   # MODELS.build(cfg.model)
        full = self.index.qualname(func) or ""
        imported = self.index.imports.get(func.value.id if isinstance(func, ast.Attribute) and isinstance(
            func.value, ast.Name) else func.id if isinstance(func, ast.Name) else "")
        module = imported[0] if imported else ""
        short = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        package = (full or module + ".").startswith(NETWORK_PACKAGES) or module.split(".")[0] + "." in NETWORK_PACKAGES
        if package and (NETWORK_FACTORY.search(short) or ".models." in full or ".networks." in full):
            return f"{spelled(func)}(...) from {module or full.split('.')[0]}"      # not timm.data.create_transform
        # a builder function (imported or a module's), not an accessor on an object (x.get_encoder())
        function = isinstance(func, ast.Name) or (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                                                  and func.value.id in self.index.imports)
        if full in CONFIG_BUILDERS:
            return f"{spelled(func)}(...), a network built from a config"
        if function and NETWORK_FACTORY.search(short) and project.resolve(self.index, func) is None:
            return f"{spelled(func)}(...), a model builder outside this project"
        return None

    def _instantiated(self, call: ast.Call, qualname: str, text: str, depth: int = 0,
                      scope: Scope | None = None) -> Origin:
        """Building a class: a module in training mode, unless it has no mode-dependent layer."""
        func = call.func
        short = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        symbol = project.resolve(self.index, func) if short else None
        if symbol is not None and symbol.is_class:
            if not project.is_module_class(symbol) or project.has_no_mode(symbol, parents=True):
                return self._held_network(scope, call, symbol) if scope is not None and depth < MAX_DEPTH \
                    else NOT_A_NETWORK
            return STATIC_ORIGIN if project.mode_dependent(symbol) is False else Origin("train", call, text)
        if not short[:1].isupper():
            return UNKNOWN_ORIGIN
        if qualname == "torch.nn.Sequential":   # only when it holds something mode-dependent
            held = [self._instantiated(a, self.index.qualname(a.func) or "", text) if isinstance(a, ast.Call)
                    else UNKNOWN_ORIGIN for a in call.args]
            return Origin("train", call, text) if any(o.state != "eval" for o in held) else STATIC_ORIGIN
        if qualname.startswith("torch."):
            return Origin("train", call, text) if qualname in TORCH_NN_MODE_DEPENDENT else UNKNOWN_ORIGIN
        return Origin("train", call, text) if MODEL_CLASS_NAME.search(short) else UNKNOWN_ORIGIN

    def _held_network(self, scope: Scope, call: ast.Call, symbol: project.Symbol) -> Origin:
        """A plain class (no nn.Module, no ``eval``) is no network, but it may hold one: an attribute
        named like a network that ``__init__`` sets from a parameter or builds. Running the wrapper runs
        that network, so the finding is about ``wrapper.<attr>``, the object that has ``eval()``."""
        tracer = Tracer.of(symbol.index)
        for owner, init in tracer._class_methods(symbol.node):
            if init.name != "__init__":
                continue
            selves = init.self_names()
            for node in init.nodes():
                if not isinstance(node, ast.Assign) or len(node.targets) != 1:
                    continue
                key = key_of(node.targets[0], selves)
                if key is None or key[0] != "self" or not HELD_NETWORK.search(key[1]):
                    continue
                if any(t._evaluated_in(m, key) for t, m in tracer._class_methods(symbol.node)):
                    return EVAL_ORIGIN             # the wrapper puts what it holds in eval mode itself
                origin = self._held_value(scope, call, owner, init, node.value)
                if origin.state == "train":
                    return Origin("train", origin.node, f"{origin.text}, held by {spelled(call.func)}(...) as "
                                  f".{key[1]}", origin.confidence, key[1])
                if origin.state == "eval":
                    return origin
        return NOT_A_NETWORK

    def _held_value(self, scope: Scope, call: ast.Call, owner: Tracer, init: Scope, value: ast.AST) -> Origin:
        if _chain_has_eval(owner.index, value, init):                   # self.net = net.to(d).eval()
            return EVAL_ORIGIN
        while isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) \
                and value.func.attr in SAME_MODULE:                      # self.net = net.to(device)
            value = value.func.value
        if isinstance(value, ast.Name) and value.id in init.params:      # self.net = net: the caller's argument
            arg = call_arg(call, init.params.index(value.id) - 1, value.id)
            return self._origin_of_value(scope, arg, MAX_DEPTH - 3) if arg is not None \
                else UNKNOWN_ORIGIN
        return owner._origin_of_value(init, value, MAX_DEPTH - 3)       # self.net = Net(): built inside
