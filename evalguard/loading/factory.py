"""Build a model from ``--model MODULE:CALLABLE`` or ``path/to/file.py:CALLABLE``.

This runs the user's own code on purpose (it is their factory, named on the command line),
unlike checkpoint files, which are never allowed to run code.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from evalguard.errors import TargetError, UsageError


def parse_factory_spec(spec: str) -> tuple[str, str]:
    """Split ``left:callable``; the left part is a dotted module or a .py path."""
    left, sep, func = spec.rpartition(":")
    # Windows drive letters aside, a spec needs exactly one meaningful colon.
    if not sep or not left or not func or not func.replace("_", "a").replace(".", "a").isalnum():
        raise UsageError(f"--model expects MODULE:CALLABLE or path/to/file.py:CALLABLE, got {spec!r}")
    return left, func


def _is_path(left: str) -> bool:
    return left.endswith(".py") or "/" in left or "\\" in left


def check_factory_spec(spec: str) -> None:
    """Reject a ``--model`` that cannot name a factory before any audit: a malformed spec, a
    missing file, or a module that is not installed. ``find_spec`` imports at most the
    module's parent packages (none for a top-level module), never the module itself."""
    left, _ = parse_factory_spec(spec)
    if _is_path(left):
        if not Path(left).is_file():
            raise UsageError(f"--model: no such file {left}")
        return
    make_cwd_importable()
    try:
        found = importlib.util.find_spec(left)
    except Exception as exc:  # noqa: BLE001 - a parent package missing or failing to import
        raise UsageError(f"--model: cannot import {left}: {type(exc).__name__}: {exc}") from None
    if found is None:
        raise UsageError(f"--model: cannot import {left}: no module named {left!r}")


def make_cwd_importable() -> None:
    """Modules in the current directory import as they would under ``python -m`` (which puts
    the current directory first on ``sys.path``); the ``evalguard`` script alone does not."""
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def import_trusted_modules(names) -> None:
    """``--trust-module`` names must import (their classes are checked by importing them); a
    name that does not is the user's typo or a missing install: a usage error, not a refusal."""
    make_cwd_importable()
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure of the user's module is reported
            detail = (str(exc).strip().splitlines() or [""])[0][:200]
            raise UsageError(f"--trust-module {name}: cannot be imported ({type(exc).__name__}: {detail})") from None


def import_factory_module(left: str):
    if _is_path(left):
        path = Path(left)
        if not path.is_file():
            raise TargetError(f"--model: no such file {left}")
        module_name = f"_evalguard_factory_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        # Let the factory import its siblings, as `python path/to/file.py` would.
        sys.path.insert(0, str(path.resolve().parent))
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            raise TargetError(f"--model: importing {left} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module
    make_cwd_importable()
    try:
        return importlib.import_module(left)
    except Exception as exc:
        raise TargetError(f"--model: cannot import {left}: {type(exc).__name__}: {exc}") from exc


def resolve_factory(spec: str):
    left, func = parse_factory_spec(spec)
    obj: Any = import_factory_module(left)
    for part in func.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"--model: {left} has no attribute {func!r}") from None
    if not callable(obj):
        raise TargetError(f"--model: {spec} is not callable")
    return obj


def build_model(spec: str):
    """Call the factory and check it returned an ``nn.Module``."""
    from torch import nn

    factory = resolve_factory(spec)
    if isinstance(factory, type) and issubclass(factory, nn.Module):
        pass  # a class is a factory too
    try:
        model = factory()
    except Exception as exc:
        raise TargetError(f"--model: {spec} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise TargetError(f"--model: {spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model
