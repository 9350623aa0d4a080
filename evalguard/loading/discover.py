"""Expand command-line targets: a folder becomes every model it holds and its .py files.

A Hugging Face ``save_pretrained`` folder is one model (one target, not walked into); inside
any other folder, model files (by suffix: checkpoints, ``.pt2``, ``.onnx``, ``.safetensors``)
and ``.py`` sources are each a target, and HF folders below it are one target each; ``.bin``
and extension-less files are targets when their first bytes are a torch or safetensors file.
Patterns from ``--exclude`` drop files and whole folders.
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path

#: Files whose presence makes a directory one model (a Hugging Face save_pretrained folder).
MODEL_FOLDER_MARKERS = ("pytorch_model.bin", "model.safetensors",
                        "pytorch_model.bin.index.json", "model.safetensors.index.json")
#: Model files found when walking a folder by name. ``.bin`` and ``.pkl`` are not among them:
#: outside a HF folder they are as often data as models (``.bin`` is judged by content below).
MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".pt2", ".onnx", ".safetensors")
#: Names that say nothing either way: such a file is a target when its content is a model's.
SNIFFED_SUFFIXES = (".bin", "")
SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "node_modules", ".tox", ".mypy_cache", ".pytest_cache"}


def is_model_folder(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in MODEL_FOLDER_MARKERS)


def is_target_file(name: str) -> bool:
    return name.endswith((".py", ".ipynb")) or name.lower().endswith(MODEL_SUFFIXES)


def sniffs_as_model(path: str) -> bool:
    """A torch.save file (zip or legacy), TorchScript, .pt2 or safetensors, by its first bytes;
    a bare pickle is left out (as often data as a model, and torch.load cannot read one)."""
    from evalguard.loading.sniff import sniff

    try:
        found = sniff(Path(path))
    except (OSError, ValueError):
        return False
    return found.container in ("torch-legacy", "safetensors") or (
        found.container == "zip" and found.layout in ("torch-save", "torchscript", "pt2"))


def _walked_target(full: str, name: str) -> bool:
    if is_target_file(name):
        return True
    return Path(name).suffix.lower() in SNIFFED_SUFFIXES and os.path.isfile(full) and sniffs_as_model(full)


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
                if not _excluded(os.path.relpath(full, path), exclude) and _walked_target(full, name):
                    found.append(full)
        expanded.extend(sorted(found) or [raw])
    return expanded
