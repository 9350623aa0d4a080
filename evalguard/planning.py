"""Which architecture and which ONNX file each target of a mixed registry gets.

* ``--model MODULE:CALLABLE`` (the plain form) is the architecture of every state_dict or
  checkpoint target; ``--model 'GLOB=MODULE:CALLABLE'`` (repeatable, and ``model = [...]`` in
  ``[tool.evalguard]``) gives the architecture of the targets matching GLOB, first match wins,
  the plain form being the fallback. A GLOB on the command line is relative to the current
  folder; one in a config file to that file's folder.
* A Hugging Face folder is always built from its own ``config.json``, and ``.onnx`` and ``.py``
  targets take no architecture: no ``--model`` reaches them. A full-module pickle keeps its own
  module (the loader never asks it for an architecture).
* Walking a folder, ``x.pt`` next to ``x.onnx`` (same stem, same folder) become one target: the
  ONNX file is that model's ``--onnx`` (parity is checked against it and its inputs are the
  model's), not a target of its own. The report's load facts say so.

Nothing here imports torch.
"""
from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from pathlib import Path

from evalguard.errors import UsageError

#: Files that pair with an ONNX file of the same stem in the same folder.
PAIRED_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")
#: The load-facts line that names a paired ONNX file.
PAIRED_LABEL = "Paired ONNX file"


def parse_model_specs(values: Iterable[str], base: Path | str, origin: str = "--model"
                      ) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """``--model`` values (or a config's ``model`` list) -> (the plain spec, ((abs glob, spec), ...)).

    ``GLOB=SPEC`` is a mapping; anything without ``=`` is the plain form (at most one)."""
    plain: str | None = None
    mapping: list[tuple[str, str]] = []
    for value in values:
        pattern, sep, spec = value.partition("=")
        if not sep:
            if plain is not None and plain != value:
                raise UsageError(f"{origin}: only one plain MODULE:CALLABLE (got {plain!r} and {value!r}); "
                                 "use GLOB=MODULE:CALLABLE for several architectures")
            plain = value.strip()
            continue
        pattern, spec = pattern.strip(), spec.strip()
        if not pattern or not spec or ":" not in spec:
            raise UsageError(f"{origin}: expected GLOB=MODULE:CALLABLE (e.g. 'ckpts/*.pt=pkg.mod:build'), "
                             f"got {value!r}")
        mapping.append((absolute_glob(pattern, base), spec))
    return plain, tuple(mapping)


def absolute_glob(pattern: str, base: Path | str) -> str:
    pattern = pattern.replace(os.sep, "/")
    if os.path.isabs(pattern):
        return os.path.normpath(pattern)
    return os.path.normpath(os.path.join(os.path.abspath(base), pattern))


def _is_hf_folder(path: str) -> bool:
    from evalguard.loading.discover import is_model_folder

    return is_model_folder(Path(path))


def takes_architecture(path: str) -> bool:
    """Whether ``--model`` may reach this target: checkpoints and state_dict files only."""
    lower = path.lower()
    return not (lower.endswith((".py", ".onnx")) or _is_hf_folder(path))


def factory_for(path: str, plain: str | None, mapping: tuple[tuple[str, str], ...]) -> str | None:
    """The architecture this target is loaded into: the first matching GLOB, else the plain form."""
    if not takes_architecture(path):
        return None
    full = os.path.normpath(os.path.abspath(path))
    for pattern, spec in mapping:
        if fnmatch.fnmatchcase(full, pattern):
            return spec
    return plain


def pair_onnx(found: list[str]) -> tuple[list[str], dict[str, str]]:
    """Targets found in one folder walk, with each ``x.onnx`` that has exactly one ``x.pt``
    (or .pth/.ckpt/.safetensors) beside it folded into that target: (targets, {model: onnx})."""
    by_stem: dict[tuple[str, str], list[str]] = {}
    for path in found:
        root, suffix = os.path.splitext(path)
        if suffix.lower() in PAIRED_SUFFIXES:
            by_stem.setdefault((os.path.dirname(path), root), []).append(path)
    pairs: dict[str, str] = {}
    for path in found:
        root, suffix = os.path.splitext(path)
        if suffix.lower() == ".onnx":
            models = by_stem.get((os.path.dirname(path), root), [])
            if len(models) == 1:           # x.pt and x.safetensors beside x.onnx: ambiguous, left apart
                pairs[models[0]] = path
    paired = set(pairs.values())
    return [p for p in found if p not in paired], pairs


def plan_paths(targets: list[str], exclude=()) -> tuple[list[str], dict[str, str]]:
    """Command-line targets expanded (folders walked) and ONNX pairs folded, in order.

    Only files found by walking a folder are paired: an ``.onnx`` named on the command line
    stays a target of its own."""
    from evalguard.loading.discover import expand_targets

    paths: list[str] = []
    pairs: dict[str, str] = {}
    for raw in targets:
        found = expand_targets([raw], exclude)
        if found != [raw]:
            found, walked_pairs = pair_onnx(found)
            pairs.update(walked_pairs)
        paths.extend(found)
    return paths, pairs
