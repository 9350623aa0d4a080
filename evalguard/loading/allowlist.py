"""Decide, global by global, whether a pickle may be loaded (and what to register for it).

The allow-list is explicit and narrow:

* torch's own weights-only set (tensor/storage rebuild helpers, dtypes, ``torch.Size``...);
* ``torch.nn`` classes: ``nn.Module`` subclasses defined under ``torch.nn`` and the
  parameter/buffer classes;
* activation functions from ``torch.nn.functional`` (a module may store ``F.relu``);
* builtins that are plain data (``set``, ``frozenset``, ``slice``...), ``OrderedDict``, value
  classes found in checkpoint metadata (``argparse.Namespace``, ``datetime``, ``pathlib`` paths),
  the numpy array/scalar rebuild helpers (metrics saved as ``np.float64`` are common) and the
  hook objects of torch's old ``weight_norm``/``spectral_norm``;
* classes (never functions) from packages named with ``--trust-module``.

Everything else is refused. "Anything under torch" is *not* allowed: ``torch.load``,
``torch.hub``, ``torch._ops`` or ``torch.utils.collect_env.run`` run code or shell commands.
Untrusted third-party packages are never imported: whether a name is a class is read from
the package's source with ``ast`` (falling back to the CamelCase convention).
"""
from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from evalguard.errors import UsageError
from evalguard.loading.gadgets import DENIED, call_reason, gadget_reason
from evalguard.loading.pickle_scan import (
    CALLED,
    FORGED_STATE,
    MAX_CONSTRUCTOR_SIZE,
    OVERSIZED,
    UNRESOLVED,
    GlobalRef,
)

ALLOWED, UNSAFE, UNTRUSTED = "allowed", "unsafe", "untrusted"

#: Builtins pickle rebuilds through REDUCE (the others have their own opcodes and are refused,
#: so that ``list(range(10**10))`` cannot be built; sizes the file chooses are checked by the scan).
_DATA_BUILTINS = ("set", "frozenset", "slice", "range", "complex", "bytearray")
_NUMPY_DATA = tuple(f"{root}.{name}" for root in ("numpy.core.multiarray", "numpy._core.multiarray")
                    for name in ("_reconstruct", "scalar")) + ("numpy.ndarray", "numpy.dtype")
#: numpy dtype classes never registered: object/void/string arrays hold pointers or structure
#: that a forged pickle state turns into a crash.
_NON_NUMERIC_DTYPES = ("ObjectDType", "VoidDType", "StrDType", "BytesDType", "StringDType",
                       "DateTime64DType", "TimeDelta64DType")
_NN_DATA_CLASSES = ("Parameter", "Buffer", "UninitializedParameter", "UninitializedBuffer")
#: Hook objects torch.nn itself stores on modules (old-style weight_norm, spectral_norm).
_NN_HOOK_CLASSES = ("torch.nn.utils.weight_norm.WeightNorm", "torch.nn.utils.spectral_norm.SpectralNorm",
                    "torch.nn.utils.spectral_norm.SpectralNormLoadStateDictPreHook",
                    "torch.nn.utils.spectral_norm.SpectralNormStateDictHook",
                    "torch.nn.modules.module._WrappedHook")
#: Plain value classes that checkpoints carry in their metadata (Lightning hparams, timestamps).
_VALUE_CLASSES = ("argparse.Namespace", "datetime.datetime", "datetime.date", "datetime.time",
                  "datetime.timedelta", "datetime.timezone", "pathlib.PosixPath", "pathlib.PurePosixPath",
                  "pathlib.WindowsPath", "pathlib.PureWindowsPath", "torch.torch_version.TorchVersion")
_ACTIVATIONS = ("relu", "relu6", "gelu", "silu", "mish", "elu", "selu", "celu", "leaky_relu",
                "hardtanh", "hardswish", "hardsigmoid", "sigmoid", "tanh", "softplus", "softsign",
                "softmax", "log_softmax", "logsigmoid", "tanhshrink", "softshrink", "hardshrink",
                "glu", "rrelu", "threshold")
#: Extra modules that run code and are not in ``sys.stdlib_module_names`` (platform aliases).
_ALWAYS_UNSAFE_MODULES = {"posix", "nt", "_posixsubprocess", "__builtin__", "copy_reg", "commands"}
_IDENTIFIER_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
#: TorchScript's own unpickler knows these (plus the ``__torch__`` types compiled in the archive).
#: Untrusted modules whose source is read (with ast) per load; beyond that, names decide.
MAX_PARSED_MODULES = 64
#: Module sources larger than this are not parsed.
MAX_SOURCE_BYTES = 2 << 20
_TORCHSCRIPT_MODULES = ("__torch__", "torch.jit._pickle")
#: torch's quantized module families (``nn.Module`` subclasses only), admitted so that int8 models
#: saved whole load; what unpickling them runs, family by family:
_TORCH_AO_FAMILIES = {
    # quantize_dynamic's Linear/LSTM/GRU/RNNCell...: nn.Module.__setstate__ (attributes only); their
    # packed weights come as a torch.ScriptObject whose class the scan checks (pickle_scan).
    "torch.ao.nn.quantized.dynamic": "dynamic int8/fp16 modules",
    # LinearPackedParams/EmbeddingPackedParams (nn.Modules holding the packed weight) and the static
    # quantized modules; _ConvNd.__setstate__ re-packs through torch.ops.quantized.conv*_prepack,
    # which validates the weight it is given.
    "torch.ao.nn.quantized.modules": "quantized modules and packed-weight holders",
    # Reference (simulated) quantized modules: plain float modules with qparams buffers.
    "torch.ao.nn.quantized.reference": "reference quantized modules",
}


@dataclass(frozen=True)
class Decision:
    status: str                 # ALLOWED, UNSAFE or UNTRUSTED
    reason: str = ""
    obj: object | None = None   # allowed object that must be registered with safe_globals
    extra: tuple = ()           # (name, object) pairs it needs registered as well
    package: str = ""           # UNTRUSTED: the package to pass with --trust-module


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _is_stdlib(module: str) -> bool:
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or top in _ALWAYS_UNSAFE_MODULES or top.startswith("_")


def check_trust_modules(trust_modules) -> tuple[str, ...]:
    """Refuse trust flags that would open up the standard library or torch itself."""
    for name in trust_modules:
        if not _IDENTIFIER_PATH.match(name):
            raise UsageError(f"--trust-module {name!r} is not a dotted module name")
        if _is_stdlib(name) or (_within(name, "torch") and not _within(name, "torch.nn")):
            raise UsageError(f"--trust-module {name}: standard-library and torch modules cannot be trusted "
                             "(torch.nn classes are always allowed)")
    return tuple(trust_modules)


@functools.lru_cache(maxsize=1)
def torch_weights_only_globals() -> frozenset[str]:
    """Names torch's weights-only unpickler accepts without registration."""
    from torch import _weights_only_unpickler

    return frozenset(_weights_only_unpickler._get_allowed_globals())


@functools.lru_cache(maxsize=1)
def named_harmless() -> dict[str, object]:
    """Data builtins and value classes, numpy rebuild helpers, torch.nn hook objects and
    activation functions, keyed by the name a pickle uses for them."""
    import builtins
    import pickle
    import pickletools

    import torch.nn.functional as F

    named: dict[str, object] = {f"builtins.{n}": getattr(builtins, n) for n in _DATA_BUILTINS}
    for full in _NUMPY_DATA + _VALUE_CLASSES + _NN_HOOK_CLASSES:
        obj = _import_attr(*full.rsplit(".", 1))
        if obj is not None:
            named[full] = obj
    for name in _ACTIVATIONS:
        func = getattr(F, name, None)
        if func is None:
            continue
        # The name a pickle uses for it (F.gelu pickles as torch._C._nn.gelu).
        refs = [arg for op, arg, _ in pickletools.genops(pickle.dumps(func, protocol=2)) if op.name == "GLOBAL"]
        if len(refs) == 1:
            module, _, qual = refs[0].partition(" ")
            named[f"{module}.{qual}"] = func
    return named


@functools.lru_cache(maxsize=1)
def numpy_dtype_classes() -> tuple:
    """numpy >= 1.25 rebuilds a dtype as an instance of a per-type class (``Float64DType``)."""
    dtypes = _import_attr("numpy", "dtypes")
    if dtypes is None:
        return ()
    return tuple((f"numpy.dtypes.{name}", cls) for name, cls in sorted(vars(dtypes).items())
                 if isinstance(cls, type) and name.endswith("DType") and name not in _NON_NUMERIC_DTYPES)


def _import_attr(module: str, name: str):
    """Import ``module`` (only ever called for torch, numpy or trusted packages) and walk ``name``."""
    try:
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj


class AllowList:
    """Classifies globals for one load; ``flavour`` is "pickle" or "torchscript"."""

    def __init__(self, trust_modules=(), flavour: str = "pickle"):
        self.trust_modules = check_trust_modules(trust_modules)
        self.flavour = flavour
        self._cache: dict[str, Decision] = {}
        self._parsed: set[str] = set()

    def decide(self, ref: GlobalRef) -> Decision:
        if ref.opcode.startswith(FORGED_STATE):
            return Decision(UNSAFE, f"object state no pickler writes ({ref.name}); numpy trusts such states "
                                    "and crashes or reads raw memory")
        if ref.opcode in (CALLED, "INST"):
            return self._decide_call(ref)
        if ref.opcode == OVERSIZED:
            return Decision(UNSAFE, f"{ref.full} called with a size chosen by the file (over "
                                    f"{MAX_CONSTRUCTOR_SIZE} items)")
        key = ref.full
        if key not in self._cache:
            self._cache[key] = self._decide(ref.module, ref.name)
        return self._cache[key]

    def _decide_call(self, ref: GlobalRef) -> Decision:
        """The pickle calls ``ref`` (REDUCE/INST/OBJ): a trusted package's class must not reach I/O
        in the ``__init__`` that call runs. Other globals are judged as where they are named."""
        key = f"{ref.full} (called)"
        if key not in self._cache:
            decision = self.decide(GlobalRef(ref.module, ref.name, ref.member))
            obj = decision.obj
            if (decision.status == ALLOWED and isinstance(obj, type)
                    and any(_within(ref.module, t) for t in self.trust_modules)):
                reason = call_reason(obj)
                if reason:
                    decision = Decision(UNSAFE, f"called by the pickle, and {reason}")
            self._cache[key] = decision
        return self._cache[key]

    def _decide(self, module: str, name: str) -> Decision:
        full = f"{module}.{name}"
        if module == UNRESOLVED or not _IDENTIFIER_PATH.match(module) or not _IDENTIFIER_PATH.match(name):
            return Decision(UNSAFE, "not a plain module.name reference")
        if full in torch_weights_only_globals():
            return Decision(ALLOWED)
        if self.flavour == "torchscript":
            if any(_within(module, m) for m in _TORCHSCRIPT_MODULES) or full == "builtins.set":
                return Decision(ALLOWED)
            return Decision(UNSAFE, "not a TorchScript type")
        if full in named_harmless():
            extra = numpy_dtype_classes() if full == "numpy.dtype" else ()
            return Decision(ALLOWED, obj=named_harmless()[full], extra=extra)
        if _within(module, "torch"):
            return self._decide_torch(module, name)
        if module == "builtins":
            return Decision(UNSAFE, "builtin callable")
        if "__main__" in module.split(".")[1:] or module.endswith(".__main__"):
            return Decision(UNSAFE, "a package's __main__ module (importing it runs the package's program)")
        if module == "__main__":
            # Classes of the script that saved the file: nothing can rebuild them here.
            if name[:1].isupper():
                return Decision(UNTRUSTED, "class defined in the script that saved the file", package="__main__")
            return Decision(UNSAFE, "callable defined in the script that saved the file")
        if _is_stdlib(module):
            return Decision(UNSAFE, "standard-library callable")
        trusted = next((t for t in self.trust_modules if _within(module, t)), None)
        if trusted is not None:
            return self._decide_trusted(module, name, trusted)
        return self._decide_untrusted(module, name)

    def _decide_torch(self, module: str, name: str) -> Decision:
        if f"{module}.{name}" == "torch.ScriptObject":
            return Decision(ALLOWED, obj=_import_attr(module, name))  # its BUILD is checked by the scan
        family = next((f for f in _TORCH_AO_FAMILIES if _within(module, f)), None)
        if family is not None:
            obj = _import_attr(module, name)
            if isinstance(obj, type) and _within(getattr(obj, "__module__", ""), family) and _is_module(obj):
                return Decision(ALLOWED, obj=obj)
            return Decision(UNSAFE, f"{family} object that is not a quantized module class")
        if not _within(module, "torch.nn"):
            return Decision(UNSAFE, "torch object outside the weights-only and torch.nn allow-list")
        obj = _import_attr(module, name)
        if _is_nn_class(obj):
            return Decision(ALLOWED, obj=obj)
        return Decision(UNSAFE, "torch.nn object that is not a module, parameter or activation function")

    def _decide_trusted(self, module: str, name: str, trusted: str) -> Decision:
        try:
            obj = importlib.import_module(module)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a trusted package that fails to import
            return Decision(UNSAFE, f"trusted module {module} could not be imported "
                                    f"({type(exc).__name__}: {exc})".splitlines()[0])
        for part in name.split("."):
            obj = getattr(obj, part, None)
        if not isinstance(obj, type):
            what = "missing" if obj is None else type(obj).__name__
            return Decision(UNSAFE, f"not a class ({what}); only classes from --trust-module {trusted} are allowed")
        real_module = getattr(obj, "__module__", "") or ""
        real = f"{real_module}.{obj.__qualname__}"
        gadget = gadget_reason(obj) or DENIED.get(f"{module}.{name}", "")
        if gadget:
            return Decision(UNSAFE, f"{real} from trusted package {trusted} is never allowed: {gadget}")
        if any(_within(real_module, t) for t in self.trust_modules):
            return Decision(ALLOWED, obj=obj)
        if _is_nn_class(obj):
            return Decision(ALLOWED, obj=obj)
        # A trusted package re-exporting someone else's class (e.g. subprocess.Popen).
        inner = self._decide(real_module, obj.__qualname__)
        if inner.status == ALLOWED:
            return Decision(ALLOWED, obj=obj)
        return Decision(inner.status, f"re-export of {real}: {inner.reason}", package=inner.package)

    def _decide_untrusted(self, module: str, name: str) -> Decision:
        package = module.split(".")[0]
        self._parsed.add(module)
        # A file naming thousands of modules gets the naming convention, not thousands of parses.
        kind = static_kind(module, name) if len(self._parsed) <= MAX_PARSED_MODULES else "unknown"
        if kind == "function" or (kind == "unknown" and not name.split(".")[-1][:1].isupper()):
            return Decision(UNSAFE, f"callable from untrusted package {package}")
        return Decision(UNTRUSTED, "class from a package not passed with --trust-module", package=package)


def _is_module(obj) -> bool:
    from torch import nn

    return issubclass(obj, nn.Module)


def _is_nn_class(obj) -> bool:
    from torch import nn

    if not isinstance(obj, type) or not _within(getattr(obj, "__module__", ""), "torch.nn"):
        return False
    return issubclass(obj, nn.Module) or obj.__name__ in _NN_DATA_CLASSES


def static_kind(module: str, name: str) -> str:
    """"class", "function" or "unknown": read from the module's source, never imported."""
    return _top_level_kinds(module).get(name.split(".")[0], "unknown")


@functools.lru_cache(maxsize=4096)
def _top_level_kinds(module: str) -> dict[str, str]:
    source = _module_source(module)
    if source is None:
        return {}
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    kinds = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            kinds[node.name] = "class"  # the last definition wins, as at import
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            kinds[node.name] = "function"
    return kinds


def _module_source(module: str) -> str | None:
    """Source text of ``module`` found on sys.path without running any package code."""
    parts = module.split(".")
    if parts[0] == "__main__":
        return None
    try:
        spec = importlib.util.find_spec(parts[0])  # top-level lookup only: imports nothing
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return None
    if len(parts) == 1:
        path = Path(spec.origin)
    else:
        roots = list(spec.submodule_search_locations or [])
        path = None
        for root in roots:
            base = Path(root, *parts[1:])
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    path = candidate
                    break
            if path:
                break
    if path is None or path.suffix != ".py" or not path.is_file() or path.stat().st_size > MAX_SOURCE_BYTES:
        return None
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
