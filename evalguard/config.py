"""``[tool.evalguard]`` in each target's nearest pyproject.toml, or a standalone
``.evalguard.toml``/``evalguard.toml`` (walking up from the target, as ruff does); ``--config
FILE`` replaces the search. Command-line flags win over the file.

The audited folder never configures its own audit: the search passes over every folder that is,
or lies inside, a *model folder* (``is_model_folder``), so a ``pyproject.toml`` shipped with a
downloaded model is never read. ``trust-module`` (which widens what the safe loader admits) is
taken only from the command line, ``--config``, or the config the run's starting directory (the
current directory) finds; in any other config file it is ignored with a note on stderr.

Validation is strict: an unknown key or a wrong type is a usage error naming the key,
because a misspelt ``ignroe`` silently doing nothing is worse than an error.
"""
from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalguard.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class FileConfig:
    path: Path | None = None
    select: list[str] | None = None
    ignore: list[str] | None = None
    extend_select: list[str] = field(default_factory=list)
    extend_ignore: list[str] = field(default_factory=list)
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
    model: list[str] = field(default_factory=list)     # --model specs, GLOB=MODULE:CALLABLE (evalguard.planning)


# key in TOML -> (attribute, expected type)
_KEYS = {
    "select": ("select", list), "ignore": ("ignore", list), "fail-on": ("fail_on", str),
    "extend-select": ("extend_select", list), "extend-ignore": ("extend_ignore", list),
    "severity": ("severity", dict), "trust-module": ("trust_module", list),
    "input-shape": ("input_shape", list), "input-dtype": ("input_dtype", str),
    "tolerances": ("tolerances", dict), "allow-stochastic": ("allow_stochastic", list),
    "exclude": ("exclude", list), "seed": ("seed", int), "device": ("device", str),
    "onnx-exporter": ("onnx_exporter", str), "backends": ("backends", str),
    "model": ("model", list),
}
_TOLERANCE_KEYS = {"atol", "rtol", "outputs"}
#: keys whose value is one of a fixed set: key -> allowed values
_CHOICES = {
    "fail-on": ("info", "warning", "error"),
    "device": ("cpu", "cuda"),
    "onnx-exporter": ("auto", "torchscript", "dynamo"),
}
_TYPE_NAMES = {list: "a list of strings", str: "a string", int: "an integer", dict: "a table"}


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: malformed TOML: {exc}") from None


#: config.json keys that make it a model's config (Hugging Face, Optimum) rather than an app's.
_MODEL_CONFIG_KEYS = ("architectures", "model_type", "auto_map")
_MAX_CONFIG_JSON = 4 << 20


def is_model_folder(folder: Path) -> bool:
    """A folder laid out as one model: Hugging Face weight files or shard index
    (``discover.MODEL_FOLDER_MARKERS``), or a ``config.json`` that describes a model
    (``architectures``, ``model_type`` or ``auto_map``). A project folder that merely holds a
    ``model.pt`` next to its code is not one."""
    from evalguard.loading.discover import MODEL_FOLDER_MARKERS

    if any((folder / marker).is_file() for marker in MODEL_FOLDER_MARKERS):
        return True
    config = folder / "config.json"
    try:
        if not config.is_file() or config.stat().st_size > _MAX_CONFIG_JSON:
            return False
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and any(key in data for key in _MODEL_CONFIG_KEYS)


#: Standalone config files, found before pyproject.toml in the same folder (as ruff's
#: .ruff.toml and ruff.toml): the keys of [tool.evalguard] at top level.
STANDALONE = (".evalguard.toml", "evalguard.toml")


def find_pyproject(start: Path) -> Path | None:
    """The nearest config from ``start`` upwards: ``.evalguard.toml`` or ``evalguard.toml``, else a
    pyproject.toml with a [tool.evalguard] table.

    As with ruff, a pyproject.toml without the table (a sub-package's own) is passed over; so is
    every one in or below the outermost model folder on the way up (the model being audited
    must not configure its own audit).
    """
    chain = [start, *start.parents]
    outermost = max((index for index, folder in enumerate(chain) if is_model_folder(folder)), default=-1)
    for folder in chain[:outermost + 1]:
        for name in STANDALONE:
            _note_skipped(folder / name, standalone=True)
        _note_skipped(folder / "pyproject.toml")
    for folder in chain[outermost + 1:]:
        for name in STANDALONE:
            if (folder / name).is_file():
                return folder / name
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            stat = candidate.stat()
            if _has_section(candidate, stat.st_mtime_ns, stat.st_size):
                return candidate
    return None


def _note_skipped(candidate: Path, standalone: bool = False) -> None:
    try:
        if not candidate.is_file():
            return
        stat = candidate.stat()
        if standalone or _has_section(candidate, stat.st_mtime_ns, stat.st_size):
            _note(f"{candidate}: not read (it is inside the model folder being audited; a model never "
                  "configures its own audit - pass --config FILE to use it)")
    except UsageError:
        return  # a malformed file in a model folder is not the run's concern


@functools.lru_cache(maxsize=256)
def _note(text: str) -> None:
    """Once per run and text, on stderr (never in the report)."""
    print(f"note: {text}", file=sys.stderr)


@functools.lru_cache(maxsize=256)
def _has_section(path: Path, mtime_ns: int, size: int) -> bool:
    """Cached per file version: a pre-commit run passes many files from the same folders."""
    tool = _read_toml(path).get("tool", {})
    return isinstance(tool, dict) and "evalguard" in tool


def _bad(origin: str, key: str, problem: str) -> UsageError:
    return UsageError(f"{origin}: [tool.evalguard] {key} {problem}")


def _one_of(values) -> str:
    quoted = [f'"{v}"' for v in values]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def parse_config(data: dict, origin: str) -> FileConfig:
    """Validate one ``[tool.evalguard]`` table; every error names the key and what it accepts."""
    config = FileConfig()
    for key, value in data.items():
        if key not in _KEYS:
            raise UsageError(f"{origin}: unknown key '{key}' in [tool.evalguard] "
                             f"(known: {', '.join(sorted(_KEYS))})")
        attr, expected = _KEYS[key]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise _bad(origin, key, f"must be {_TYPE_NAMES[expected]}, got {value!r}")
        if expected is list and not all(isinstance(item, str) for item in value):
            raise _bad(origin, key, f"must be a list of strings, got {value!r}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise _bad(origin, key, f"must be {_one_of(_CHOICES[key])}, got {value!r}")
        setattr(config, attr, value)
    for rule, level in config.severity.items():
        if not isinstance(level, str) or level.strip().lower() not in _CHOICES["fail-on"]:
            raise UsageError(f"{origin}: [tool.evalguard.severity] {rule} must be "
                             f"{_one_of(_CHOICES['fail-on'])}, got {level!r}")
    unknown_tol = set(config.tolerances) - _TOLERANCE_KEYS
    if unknown_tol:
        raise UsageError(f"{origin}: unknown key '{min(unknown_tol)}' in [tool.evalguard.tolerances] "
                         f"(known: atol, rtol, outputs)")
    for key in ("atol", "rtol"):
        value = config.tolerances.get(key)
        if key in config.tolerances and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise UsageError(f"{origin}: [tool.evalguard.tolerances] {key} must be a number, got {value!r}")
    return config


def load_config(explicit: str | None = None, start: Path | None = None, searched: bool = False) -> FileConfig:
    """The explicit ``--config`` file, else the nearest pyproject.toml with a [tool.evalguard]
    table from ``start`` (default: the current folder); an empty config if there is none.

    ``searched``: ``explicit`` is a file the per-target search found (not one the user named),
    so its ``trust-module`` counts only if it is also the current directory's config.
    """
    if explicit is None:
        searched = True
    path = Path(explicit) if explicit else find_pyproject(start or Path.cwd())
    if path is None:
        return FileConfig()
    data = _read_toml(path)
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
    if searched and config.trust_module and not _is_cwd_config(path):
        _note(f"{path}: trust-module ignored (it is read only from the command line, --config, or the "
              f"config of the directory the run starts in, {Path.cwd()})")
        config.trust_module = []
    return config


def _is_cwd_config(path: Path) -> bool:
    found = find_pyproject(Path.cwd().resolve())
    return found is not None and found.resolve() == path.resolve()


def start_folder(target: str | Path) -> Path:
    """Where the search for a target's pyproject.toml starts: the folder itself, or the file's folder.

    A path that does not exist yet starts from its parent (the run reports the missing target).
    """
    path = Path(target).resolve()
    return path if path.is_dir() else path.parent
