"""Example inputs: parse ``--input-shape``, load ``--example-inputs``, make tensors."""
from __future__ import annotations

import math
import os
import re

from evalguard.errors import TargetError, UsageError
from evalguard.subject import ExampleInputs

_SHAPE = re.compile(r"^\d+(x\d+)*$")
DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "bool")


def parse_shape(text: str) -> tuple[int, ...]:
    """``4x3x224x224`` -> (4, 3, 224, 224); every dimension must be positive."""
    cleaned = text.strip().lower().replace(",", "x")
    if not _SHAPE.match(cleaned):
        raise UsageError(f"malformed --input-shape {text!r}: expected sizes joined by 'x', e.g. 4x3x224x224")
    dims = tuple(int(d) for d in cleaned.split("x"))
    if any(d <= 0 for d in dims):
        raise UsageError(f"malformed --input-shape {text!r}: every dimension must be positive")
    return dims


def parse_dtype(text: str | None) -> str | None:
    if text is None:
        return None
    name = text.strip().lower().removeprefix("torch.")
    aliases = {"float": "float32", "half": "float16", "long": "int64", "int": "int32", "double": "float64"}
    name = aliases.get(name, name)
    if name not in DTYPES:
        raise UsageError(f"unknown --input-dtype {text!r} (expected one of {', '.join(DTYPES)})")
    return name


_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4, "bool": 1}


def available_memory() -> int | None:
    """Bytes of memory this machine can still hand out (Linux MemAvailable, else physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def check_allocatable(shapes, dtype: str | None) -> None:
    """An input that cannot fit in memory is a usage error, found before any model is loaded."""
    total = sum(math.prod(shape) for shape in shapes) * _ITEMSIZE[dtype or "float32"]
    available = available_memory()
    if available is not None and total > available:
        label = " ".join("x".join(map(str, s)) for s in shapes)
        raise UsageError(f"--input-shape {label}: the inputs need {_bytes(total)} ({dtype or 'float32'}), "
                         f"more than the {_bytes(available)} of memory available")


def make_tensor(shape: tuple[int, ...], dtype: str | None, *, high: int = 2, seed: int = 0):
    """A reproducible random tensor; integer inputs stay in ``[0, high)`` (token ids, labels)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    torch_dtype = getattr(torch, dtype or "float32")
    if torch_dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    if not torch_dtype.is_floating_point:
        return torch.randint(0, max(high, 1), shape, generator=generator, dtype=torch_dtype)
    return torch.randn(shape, generator=generator).to(torch_dtype)


def inputs_from_shapes(shapes, dtype: str | None, *, seed: int = 0, int_high: int = 2) -> ExampleInputs:
    args = tuple(make_tensor(shape, dtype, high=int_high, seed=seed + i) for i, shape in enumerate(shapes))
    label = ", ".join("x".join(map(str, s)) for s in shapes)
    return ExampleInputs(args=args, kwargs={}, source=f"--input-shape {label}" + (f" ({dtype})" if dtype else ""))


def with_dtype(inputs: ExampleInputs, dtype: str | None, *, seed: int = 0) -> ExampleInputs:
    """Inferred inputs in the ``--input-dtype`` the user asked for.

    Floating-point inputs (features, pixels) take the dtype: cast when it is floating too,
    regenerated when it is an integer or bool type. Integer inputs (token ids, masks) keep
    theirs unless the dtype is an integer type as well.
    """
    import torch

    if dtype is None:
        return inputs
    wanted = getattr(torch, dtype)

    def convert(value, index: int):
        if not isinstance(value, torch.Tensor) or value.dtype == wanted:
            return value
        if value.is_floating_point():
            if wanted.is_floating_point:
                return value.to(wanted)
            return make_tensor(tuple(value.shape), dtype, seed=seed + index)
        if not wanted.is_floating_point and wanted != torch.bool and value.dtype != torch.bool:
            return value.to(wanted)
        return value

    args = tuple(convert(v, i) for i, v in enumerate(inputs.args))
    kwargs = {k: convert(v, len(args) + i) for i, (k, v) in enumerate(inputs.kwargs.items())}
    changed = any(a is not b for a, b in zip(args, inputs.args)) or any(
        kwargs[k] is not inputs.kwargs[k] for k in kwargs)
    if not changed:
        return inputs
    return ExampleInputs(args=args, kwargs=kwargs, source=f"{inputs.source} (as --input-dtype {dtype})",
                         names=inputs.names)


def load_example_inputs(path: str) -> ExampleInputs:
    """A tensor, tuple/list of tensors (positional) or dict (keyword), loaded weights-only."""
    import torch

    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TargetError(f"--example-inputs: no such file {path}") from None
    except Exception as exc:
        raise TargetError(f"--example-inputs: cannot read {path} as a weights-only torch file: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    if isinstance(value, torch.Tensor):
        return ExampleInputs(args=(value,), source=f"--example-inputs {path}")
    if isinstance(value, (tuple, list)):
        return ExampleInputs(args=tuple(value), source=f"--example-inputs {path}")
    if isinstance(value, dict):
        return ExampleInputs(kwargs=dict(value), source=f"--example-inputs {path}")
    raise TargetError(f"--example-inputs: {path} holds a {type(value).__name__}; "
                      "expected a tensor, a tuple/list of tensors or a dict")
