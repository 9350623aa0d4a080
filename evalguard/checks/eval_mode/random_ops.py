"""Notice random torch calls (functional dropout, ``torch.rand*``, SDPA or
``multi_head_attention_forward`` with ``dropout_p``) while a
forward runs, so a finding can say *which call* inside the responsible module is random.

A ``TorchFunctionMode`` sees every torch function and Tensor method; it is only switched on
for the localisation pass, after a difference was already found.
"""
from __future__ import annotations

from collections.abc import Callable

from torch.overrides import TorchFunctionMode

# name -> (index of "p", index of "training", default training); None: no such argument.
_DROPOUTS = {
    "dropout": (1, 2, True), "dropout1d": (1, 2, True), "dropout2d": (1, 2, True), "dropout3d": (1, 2, True),
    "alpha_dropout": (1, 2, False), "feature_alpha_dropout": (1, 2, False),
    "native_dropout": (1, 2, True), "rrelu": (None, 3, False),
}
_ALWAYS_RANDOM = {
    "rand", "rand_like", "randn", "randn_like", "randint", "randint_like", "randperm", "bernoulli",
    "bernoulli_", "multinomial", "normal", "normal_", "poisson", "uniform_", "exponential_",
    "geometric_", "log_normal_", "cauchy_", "random_", "gumbel_softmax",
}
_KEYWORDS = {1: "p", 2: "training", 3: "training"}


def _arg(args, kwargs, index, keyword, default):
    if index is None:
        return default
    if len(args) > index:
        return args[index]
    return kwargs.get(keyword, default)


def _label(func, name: str) -> str:
    owner = getattr(func, "__module__", None) or ""
    if owner == "torch._C._nn":
        return f"torch.nn.functional.{name}"
    if not owner and getattr(func, "__qualname__", "").startswith(("TensorBase.", "Tensor.")):
        return f"Tensor.{name}"
    return f"{owner or 'torch'}.{name}"


def random_call(func, args, kwargs) -> str | None:
    """A readable name for ``func`` when this call draws random numbers, else None."""
    name = getattr(func, "__name__", "")
    label = _label(func, name)
    if name in _DROPOUTS:
        p_index, train_index, default = _DROPOUTS[name]
        p = _arg(args, kwargs, p_index, "p", 0.5)
        training = _arg(args, kwargs, train_index, _KEYWORDS[train_index], default)
        if training and (p_index is None or (p or 0) > 0):
            return f"{label}(training=True)" if p_index is None else f"{label}(p={p}, training=True)"
        return None
    if name == "scaled_dot_product_attention":
        p = _arg(args, kwargs, 4, "dropout_p", 0.0)
        return f"{label}(dropout_p={p})" if p else None
    if name == "multi_head_attention_forward":
        p = _arg(args, kwargs, 10, "dropout_p", 0.0)
        training = _arg(args, kwargs, 13, "training", True)
        return f"{label}(dropout_p={p}, training=True)" if p and training else None
    if name in _ALWAYS_RANDOM or name.rstrip("_") in _ALWAYS_RANDOM:
        return label
    return None


class RandomCalls(TorchFunctionMode):
    """Reports each random call to ``on_call(label)``."""

    def __init__(self, on_call: Callable[[str], None]):
        super().__init__()
        self.on_call = on_call

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        label = random_call(func, args, kwargs)
        if label is not None:
            self.on_call(label)
        return func(*args, **kwargs)
