"""Expand command-line targets: directories become the model folders and .py files inside."""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path

#: Files whose presence makes a directory one model (a Hugging Face save_pretrained folder).
MODEL_FOLDER_MARKERS = ("pytorch_model.bin", "model.safetensors",
                        "pytorch_model.bin.index.json", "model.safetensors.index.json")
SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "node_modules", ".tox", ".mypy_cache", ".pytest_cache"}


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in MODEL_FOLDER_MARKERS)


def _excluded(relative: str, patterns) -> bool:
    return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(Path(relative).name, p) for p in patterns)


def expand_targets(paths, exclude=()) -> list[str]:
    """Files stay as given; a model folder stays one target; other folders yield their .py files.

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
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS
                             and not _excluded(os.path.relpath(os.path.join(root, d), path), exclude))
            for name in sorted(files):
                full = os.path.join(root, name)
                if name.endswith(".py") and not _excluded(os.path.relpath(full, path), exclude):
                    found.append(full)
        expanded.extend(found or [raw])
    return expanded
