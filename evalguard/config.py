"""``[tool.evalguard]`` in the nearest pyproject.toml. Command-line flags win over it.

Validation is strict: an unknown key or a wrong type is a usage error naming the key,
because a misspelt ``ignroe`` silently doing nothing is worse than an error.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalguard.errors import UsageError
from evalguard.findings import Severity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class FileConfig:
    path: Path | None = None
    select: list[str] | None = None
    ignore: list[str] | None = None
    fail_on: str | None = None
    severity: dict[str, str] = field(default_factory=dict)
    trust_module: list[str] = field(default_factory=list)
    input_shape: list[str] = field(default_factory=list)
    input_dtype: str | None = None
    tolerances: dict[str, Any] = field(default_factory=dict)
    allow_stochastic: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    seed: int | None = None
    device: str | None = None
    onnx_exporter: str | None = None
    backends: str | None = None


# key in TOML -> (attribute, expected type)
_KEYS = {
    "select": ("select", list), "ignore": ("ignore", list), "fail-on": ("fail_on", str),
    "severity": ("severity", dict), "trust-module": ("trust_module", list),
    "input-shape": ("input_shape", list), "input-dtype": ("input_dtype", str),
    "tolerances": ("tolerances", dict), "allow-stochastic": ("allow_stochastic", list),
    "exclude": ("exclude", list), "seed": ("seed", int), "device": ("device", str),
    "onnx-exporter": ("onnx_exporter", str), "backends": ("backends", str),
}
_TOLERANCE_KEYS = {"atol", "rtol", "outputs"}


def find_pyproject(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def parse_config(data: dict, origin: str) -> FileConfig:
    config = FileConfig()
    for key, value in data.items():
        if key not in _KEYS:
            raise UsageError(f"{origin}: unknown key '{key}' in [tool.evalguard] "
                             f"(known: {', '.join(sorted(_KEYS))})")
        attr, expected = _KEYS[key]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise UsageError(f"{origin}: [tool.evalguard] {key} must be a {expected.__name__}")
        if expected is list and not all(isinstance(item, str) for item in value):
            raise UsageError(f"{origin}: [tool.evalguard] {key} must be a list of strings")
        setattr(config, attr, value)
    for rule, level in config.severity.items():
        if not isinstance(level, str):
            raise UsageError(f"{origin}: [tool.evalguard.severity] {rule} must be a string")
        try:
            Severity.parse(level)
        except ValueError as exc:
            raise UsageError(f"{origin}: [tool.evalguard.severity] {rule}: {exc}") from None
    if config.onnx_exporter not in (None, "auto", "torchscript", "dynamo"):
        raise UsageError(f"{origin}: [tool.evalguard] onnx-exporter must be auto, torchscript or dynamo")
    if config.device not in (None, "cpu", "cuda"):
        raise UsageError(f"{origin}: [tool.evalguard] device must be cpu or cuda")
    unknown_tol = set(config.tolerances) - _TOLERANCE_KEYS
    if unknown_tol:
        raise UsageError(f"{origin}: unknown key '{sorted(unknown_tol)[0]}' in [tool.evalguard.tolerances] "
                         f"(known: atol, rtol, outputs)")
    for key in ("atol", "rtol"):
        if key in config.tolerances and not isinstance(config.tolerances[key], (int, float)):
            raise UsageError(f"{origin}: [tool.evalguard.tolerances] {key} must be a number")
    return config


def load_config(explicit: str | None = None, start: Path | None = None) -> FileConfig:
    """The explicit ``--config`` file, else the nearest pyproject.toml; empty config if none."""
    path = Path(explicit) if explicit else find_pyproject(start or Path.cwd())
    if path is None:
        return FileConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: malformed TOML: {exc}") from None
    section = data.get("tool", {}).get("evalguard")
    if section is None:
        if explicit and path.name != "pyproject.toml":
            section = data  # a standalone evalguard.toml holds the keys at top level
        else:
            return FileConfig(path=path)
    if not isinstance(section, dict):
        raise UsageError(f"{path}: [tool.evalguard] must be a table")
    config = parse_config(section, str(path))
    config.path = path
    return config
