"""Why a module behaves differently in train and eval mode, judged without running it.

Three views of a model: torch.nn types whose forward depends on ``self.training`` plus a cheap
bytecode scan of user-defined forwards for ``self.training`` reads (eager modules); the
original class name, attributes and code of TorchScript modules; and the training-mode ops
of a torch.export graph, whose mode was frozen at export time.
"""
from __future__ import annotations

import dis
import functools
import inspect
import re

import torch
import torch.nn as nn

# --- eager modules -------------------------------------------------------------------------

def torch_reason(module: nn.Module) -> str | None:
    """Why a torch.nn module behaves differently in training mode, None when it does not."""
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return f"{type(module).__name__}(p={module.p}) is random in training" if module.p > 0 else None
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if not module.track_running_stats:
            return None  # uses batch statistics in both modes: EG104's business, not a mode difference
        return "normalises with batch statistics in training, running statistics in eval"
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return "updates and ignores running statistics in training" if module.track_running_stats else None
    if isinstance(module, nn.RNNBase):
        if module.dropout > 0 and module.num_layers > 1:
            return f"applies dropout={module.dropout} between layers in training"
        return None
    if isinstance(module, nn.MultiheadAttention):
        return f"attention dropout={module.dropout} in training" if module.dropout > 0 else None
    if isinstance(module, nn.RReLU):
        return "samples a random negative slope in training"
    return None


def _is_torch_code(obj) -> bool:
    return (getattr(obj, "__module__", None) or "").split(".")[0] == "torch"


def _function(attr):
    if isinstance(attr, (staticmethod, classmethod)):
        attr = attr.__func__
    elif isinstance(attr, property):
        attr = attr.fget
    attr = inspect.unwrap(attr) if callable(attr) else attr
    return attr if inspect.isfunction(attr) and not _is_torch_code(attr) else None


def _code_objects(code):
    yield code
    for const in code.co_consts:
        if inspect.iscode(const):
            yield from _code_objects(const)


@functools.lru_cache(maxsize=4096)
def reads_training(cls: type) -> bool:
    """True when a user-defined forward (or a method it calls on self) reads ``.training``.

    torch.nn classes are left to ``torch_reason``: e.g. TransformerEncoderLayer reads
    ``self.training`` only to pick its fast path, and its Dropout children are listed anyway.
    """
    if _is_torch_code(cls):
        return False
    pending = [f for klass in cls.__mro__ if not _is_torch_code(klass) and klass is not object
               for f in [_function(klass.__dict__.get("forward"))] if f is not None]
    seen = set()
    while pending:
        func = pending.pop()
        if func in seen:
            continue
        seen.add(func)
        for code in _code_objects(func.__code__):
            for ins in dis.get_instructions(code):
                if ins.opname not in ("LOAD_ATTR", "LOAD_METHOD") or not isinstance(ins.argval, str):
                    continue
                if ins.argval == "training":
                    return True
                if len(seen) < 32:  # follow self.helper(...) a little way, cheaply
                    helper = _function(inspect.getattr_static(cls, ins.argval, None))
                    if helper is not None:
                        pending.append(helper)
    return False


def eager_reason(module: nn.Module) -> str | None:
    reason = torch_reason(module)
    if reason is None and reads_training(type(module)):
        reason = "its forward reads self.training"
    return reason


# --- TorchScript -----------------------------------------------------------------------------

_SCRIPT_DROPOUT = {"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"}
_SCRIPT_BATCHNORM = {"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"}
_SCRIPT_INSTANCENORM = {"InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"}
_TRAINING_READ = re.compile(r"\.training\b")


def script_reason(module) -> str | None:
    """The same judgement for a ScriptModule, from its original class name and attributes."""
    name = getattr(module, "original_name", type(module).__name__)
    attr = lambda key, default=None: getattr(module, key, default)  # noqa: E731
    if name in _SCRIPT_DROPOUT:
        p = attr("p")  # traced modules keep no attributes: assume the dropout is live
        return None if p is not None and p <= 0 else f"{name}(p={p if p is not None else '?'}) is random in training"
    if name in _SCRIPT_BATCHNORM:
        return "normalises with batch statistics in training" if attr("track_running_stats", True) else None
    if name in _SCRIPT_INSTANCENORM:
        return "updates and ignores running statistics in training" if attr("track_running_stats") else None
    if name in {"RNN", "LSTM", "GRU"}:
        dropout = attr("dropout", 0.0) or 0.0
        if dropout > 0 and attr("num_layers", 1) > 1:
            return f"applies dropout={dropout} between layers in training"
        return None
    if name == "MultiheadAttention":
        dropout = attr("dropout", 0.0) or 0.0
        return f"attention dropout={dropout} in training" if dropout > 0 else None
    if name == "RReLU":
        return "samples a random negative slope in training"
    try:
        code = module.code
    except Exception:  # noqa: BLE001 - containers without forward have no code
        return None
    return "its forward reads self.training" if _TRAINING_READ.search(code) else None


# --- exported graphs -------------------------------------------------------------------------

#: aten op -> (index, keyword) of its "training" argument; p (index 1) must be > 0 for dropouts.
_GRAPH_TRAIN_ARG = {
    **{op: (2, "train") for op in ("dropout", "dropout_", "feature_dropout", "feature_dropout_",
                                   "alpha_dropout", "alpha_dropout_", "feature_alpha_dropout",
                                   "feature_alpha_dropout_", "native_dropout")},
    **{op: (5, "training") for op in ("batch_norm", "native_batch_norm", "_native_batch_norm_legit",
                                      "_native_batch_norm_legit_functional")},
    "instance_norm": (5, "use_input_stats"),
    "rrelu": (3, "training"),
    "rrelu_with_noise": (4, "training"),
}


def _arg(node, index: int, keyword: str):
    return node.args[index] if len(node.args) > index else node.kwargs.get(keyword)


def graph_training_ops(model) -> list[tuple[str, str, str]]:
    """(module, type, reason) for each training-mode op in a torch.export / fx graph."""
    graph = getattr(model, "graph", None)
    if not isinstance(model, torch.fx.GraphModule) or graph is None:
        return []
    ops = []
    for node in graph.nodes:
        packet = getattr(getattr(node.target, "_overloadpacket", None), "__name__", None)
        if node.op != "call_function" or packet not in _GRAPH_TRAIN_ARG:
            continue
        if getattr(node.target, "_overloadname", "") == "no_stats":
            continue
        index, keyword = _GRAPH_TRAIN_ARG[packet]
        if _arg(node, index, keyword) is not True:
            continue
        if "dropout" in packet and not (_arg(node, 1, "p") or 0) > 0:
            continue
        if "norm" in packet and _arg(node, 3, "running_mean") is None:
            continue  # batch statistics in both modes
        stack = node.meta.get("nn_module_stack") or {}
        owner, owner_type = list(stack.values())[-1] if stack else (node.name, "")
        ops.append((str(owner), str(owner_type).rsplit(".", 1)[-1] or packet,
                    f"graph op aten.{packet} was exported in training mode"))
    return ops
