"""Expand command-line targets: a folder becomes every model it holds and its .py files.

A Hugging Face ``save_pretrained`` folder is one model (one target, not walked into); inside
any other folder, model files (by suffix: checkpoints, ``.pt2``, ``.onnx``, ``.safetensors``)
and ``.py`` sources are each a target, and HF folders below it are one target each. Patterns
from ``--exclude`` drop files and whole folders.
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path

#: Files whose presence makes a directory one model (a Hugging Face save_pretrained folder).
MODEL_FOLDER_MARKERS = ("pytorch_model.bin", "model.safetensors",
                        "pytorch_model.bin.index.json", "model.safetensors.index.json")
#: Model files found when walking a folder. ``.bin`` and ``.pkl`` are left out: outside a HF
#: folder they are as often data as models (name such a file on the command line to audit it).
MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".pt2", ".onnx", ".safetensors")
SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "node_modules", ".tox", ".mypy_cache", ".pytest_cache"}


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in MODEL_FOLDER_MARKERS)


def is_target_file(name: str) -> bool:
    return name.endswith((".py", ".ipynb")) or name.lower().endswith(MODEL_SUFFIXES)


def _excluded(relative: str, patterns) -> bool:
    return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(Path(relative).name, p) for p in patterns)


def expand_targets(paths, exclude=()) -> list[str]:
    """Files stay as given; a model folder stays one target; other folders yield the model
    files, model folders and .py files inside them (in walk order, sorted).

    A folder with nothing to audit is kept as given so that loading reports it clearly.
    """
    expanded: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir() or is_model_folder(path):
            expanded.append(raw)
            continue
        found = []
        for root, dirs, files in os.walk(path):
            kept = []
            for name in sorted(dirs):
                full = os.path.join(root, name)
                if name in SKIP_DIRS or _excluded(os.path.relpath(full, path), exclude):
                    continue
                if is_model_folder(Path(full)):
                    found.append(full)           # one model: not walked into
                else:
                    kept.append(name)
            dirs[:] = kept
            for name in sorted(files):
                full = os.path.join(root, name)
                if is_target_file(name) and not _excluded(os.path.relpath(full, path), exclude):
                    found.append(full)
        expanded.extend(sorted(found) or [raw])
    return expanded
