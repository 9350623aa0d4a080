"""What each operation in a dataflow graph does, as far as the architecture rules care.

One table for modules (by class) and one for functions and tensor methods (by normalised
name), so the fx view and the forward-hook view classify the same operation the same way.
"""
from __future__ import annotations

import functools
import operator

import torch
from torch import nn

# Categories. Which of them carry a Dropout's variance shift: SHIFT_PASSES (reasoning in rules/EG201.toml).
DROPOUT = "dropout"
BATCHNORM = "batchnorm"
NORM = "norm"            # LayerNorm, GroupNorm, InstanceNorm, RMSNorm, ...: re-normalises per sample
SOFTMAX = "softmax"      # re-normalises too, and is a common last op
ACTIVATION = "activation"
POOL = "pool"            # pooling and resampling
WEIGHT = "weight"        # linear / conv with learned weights
SHAPE = "shape"          # moves values around without changing them
IDENTITY = "identity"    # returns the same values in the same layout (Identity, contiguous, clone, .to)
JOIN = "join"            # cat / stack: several inputs side by side, values unchanged
ARITH = "arith"          # element-wise arithmetic: a scale/shift with one data input, a mix with two
MATMUL = "matmul"        # matmul/einsum: a weight layer with one data input, a mix (attention) with two
OTHER = "other"
INPUT = "input"

#: Categories the variance shift of a Dropout travels through unchanged or reduced, never reset.
SHIFT_PASSES = frozenset({DROPOUT, ACTIVATION, POOL, WEIGHT, SHAPE, IDENTITY, JOIN})
#: Categories that leave a tensor's values as they are ("directly before" may look through them).
LAYOUT = frozenset({SHAPE, IDENTITY})
#: Categories whose outputs are the same feature map, element for element (EG204's backward walk).
FEATURE_PASSES = frozenset({ACTIVATION, BATCHNORM, NORM, POOL, DROPOUT, JOIN, ARITH, IDENTITY})

_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.GLU,
    nn.Hardshrink, nn.Softshrink,
)
#: Activations f with f(c*x) == c*f(x) for c >= 0: Dropout before or after them is the same.
POSITIVELY_HOMOGENEOUS = frozenset({"ReLU", "LeakyReLU", "PReLU", "relu", "leaky_relu", "prelu"})

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm,
          nn.CrossMapLRN2d) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
_SOFTMAXES = (nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d)
_WEIGHTS = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)
_POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
          nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
          nn.modules.pooling._LPPoolNd, nn.FractionalMaxPool2d, nn.FractionalMaxPool3d, nn.Upsample)
_SHAPES = (nn.Flatten, nn.Unflatten, nn.PixelShuffle, nn.PixelUnshuffle,
           nn.ChannelShuffle, nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
           nn.modules.padding._ReplicationPadNd, nn.modules.padding._CircularPadNd)

#: Modules that only hold other modules.
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
#: Custom (non torch.nn) classes named like these are treated as normalisation layers.
_NORM_NAME_SUFFIXES = ("LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm")


def module_class(module: nn.Module) -> type:
    """The class to classify by; a TorchScript module stands for the torch.nn class it was scripted from."""
    cls = type(module)
    if _is_script_class(cls):
        original = getattr(nn, getattr(module, "original_name", ""), None)
        if isinstance(original, type):
            return original
    return cls


def module_type_name(module: nn.Module) -> str:
    """The class name to show: a TorchScript module's original class, not RecursiveScriptModule."""
    if _is_script_class(type(module)):
        return getattr(module, "original_name", None) or type(module).__name__
    return type(module).__name__


def module_category(module: nn.Module) -> str:
    return class_category(module_class(module))


@functools.cache
def _is_script_class(cls: type) -> bool:
    return issubclass(cls, torch.jit.ScriptModule)


@functools.cache
def class_category(cls: type) -> str:
    """Cached per class: isinstance checks against torch.nn's base classes are slow at 10k modules."""
    if issubclass(cls, nn.modules.dropout._DropoutNd):
        return DROPOUT
    if issubclass(cls, nn.modules.batchnorm._BatchNorm):
        return BATCHNORM
    if issubclass(cls, _NORMS) or _is_custom_norm_class(cls):
        return NORM
    if issubclass(cls, _SOFTMAXES):
        return SOFTMAX
    if issubclass(cls, _ACTIVATIONS):
        return ACTIVATION
    if issubclass(cls, _WEIGHTS):
        return WEIGHT
    if issubclass(cls, _POOLS):
        return POOL
    if issubclass(cls, _SHAPES):
        return SHAPE
    if issubclass(cls, nn.Identity):
        return IDENTITY
    return OTHER


def _is_custom_norm_class(cls: type) -> bool:
    return not cls.__module__.startswith("torch.") and cls.__name__.endswith(_NORM_NAME_SUFFIXES)


@functools.cache
def _is_leaf_class(cls: type) -> bool:
    builtin = cls.__module__.startswith(("torch.nn", "torch.ao.nn"))
    return (builtin and not issubclass(cls, CONTAINERS)) or _is_custom_norm_class(cls)


def is_leaf(module: nn.Module) -> bool:
    """The modules both views treat as one operation: torch.nn's own (as fx does) and custom norms."""
    return _is_leaf_class(type(module))


def conv_spatial_dims(module: nn.Module) -> int | None:
    """2 for Conv2d/ConvTranspose2d, 3 for Conv3d, ...; None for anything else."""
    if issubclass(module_class(module), nn.modules.conv._ConvNd):
        return len(module.kernel_size)
    return None


def module_dropout_p(module: nn.Module) -> float:
    return float(getattr(module, "p", 0.0))


# ---- functions and tensor methods --------------------------------------------------------

_FUNCTION_CATEGORIES = {
    DROPOUT: ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
              "feature_alpha_dropout", "feature_dropout"),
    BATCHNORM: ("batch_norm",),
    NORM: ("layer_norm", "group_norm", "instance_norm", "rms_norm", "local_response_norm", "normalize"),
    SOFTMAX: ("softmax", "log_softmax", "softmin"),
    ACTIVATION: ("relu", "relu6", "leaky_relu", "prelu", "rrelu", "elu", "selu", "celu", "gelu",
                 "silu", "mish", "sigmoid", "tanh", "hardtanh", "hardswish", "hardsigmoid",
                 "softplus", "softsign", "tanhshrink", "threshold", "logsigmoid", "glu",
                 "hardshrink", "softshrink"),
    WEIGHT: ("linear", "bilinear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
             "conv_transpose2d", "conv_transpose3d", "addmm"),
    POOL: ("max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
           "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
           "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "lp_pool1d",
           "lp_pool2d", "lp_pool3d", "interpolate", "upsample", "mean", "sum", "amax", "max"),
    SHAPE: ("view", "reshape", "flatten", "unflatten", "permute", "transpose", "t", "squeeze",
            "unsqueeze", "expand", "expand_as", "getitem", "narrow", "select", "split", "chunk",
            "unbind", "movedim", "flip", "roll", "repeat", "pad", "pixel_shuffle", "pixel_unshuffle",
            "view_as", "reshape_as"),
    IDENTITY: ("identity", "contiguous", "clone", "detach", "to", "type", "float", "half", "double",
               "bfloat16", "cpu", "cuda"),
    JOIN: ("cat", "concat", "concatenate", "stack", "hstack", "vstack"),
    ARITH: ("add", "sub", "mul", "div", "truediv", "floordiv", "pow", "neg", "rsub", "sqrt",
            "rsqrt", "exp", "abs", "clamp", "clip", "where", "masked_fill", "multiply", "true_divide",
            "subtract"),
    MATMUL: ("matmul", "mm", "bmm", "einsum", "baddbmm", "scaled_dot_product_attention"),
}
#: fx records size queries on proxies as ops; they yield Python numbers, not data.
NON_TENSOR_OPS = frozenset({"getattr", "size", "dim", "numel", "len", "ndimension"})
_BY_NAME = {name: category for category, names in _FUNCTION_CATEGORIES.items() for name in names}
_OPERATOR_NAMES = {operator.add: "add", operator.sub: "sub", operator.mul: "mul",
                   operator.truediv: "div", operator.floordiv: "floordiv", operator.neg: "neg",
                   operator.getitem: "getitem", operator.matmul: "matmul", operator.pow: "pow",
                   operator.iadd: "add", operator.imul: "mul"}


def function_name(func) -> str:
    """``torch.nn.functional.relu``, ``Tensor.__radd__``, ``Tensor.add_``, ``operator.add`` -> bare name."""
    if func in _OPERATOR_NAMES:
        return _OPERATOR_NAMES[func]
    name = func if isinstance(func, str) else getattr(func, "__name__", type(func).__name__)
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        # Reflected and in-place dunders: __radd__ -> add, __iadd__ -> add, __rmatmul__ -> matmul.
        for prefix in ("r", "i"):
            if name.startswith(prefix) and name[1:] in _BY_NAME:
                name = name[1:]
    elif name.endswith("_") and not name.startswith("_"):
        name = name[:-1]  # in-place variant: relu_ -> relu
    return name


def function_category(name: str) -> str:
    return _BY_NAME.get(name, OTHER)


def function_dropout_p(args, kwargs) -> float:
    """p of ``F.dropout(input, p=0.5, training=True, inplace=False)`` and its variants."""
    if "p" in kwargs:
        value = kwargs["p"]
    elif len(args) > 1:
        value = args[1]
    else:
        value = 0.5
    return float(value) if isinstance(value, (int, float)) else 0.5


def conv_function_dims(name: str) -> int | None:
    for dims in (1, 2, 3):
        if name in (f"conv{dims}d", f"conv_transpose{dims}d"):
            return dims
    return None

