"""Scan every pickle in a model folder, whether or not the loader would read it.

A malicious ``pytorch_model.bin`` next to the ``model.safetensors`` that is actually loaded, or a
stray ``*.pkl``, is still a payload someone will open. Every regular file (by content, not by
name) that is a zip archive, a legacy torch stream or a pickle is scanned; their globals are
vetted together and reported on the folder target.
"""
from __future__ import annotations

import os
from pathlib import Path

from evalguard.loading.archive import Archive, ArchiveCorrupt, ArchiveRefused
from evalguard.loading.pickle_scan import (
    GlobalRef,
    PickleScanError,
    is_legacy_magic,
    pickle_members,
    scan_legacy_stream,
    scan_pickle,
)

MAX_FILES = 10_000
MAX_DEPTH = 4
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt", ".joblib", ".dat")


def scan_folder(folder: Path) -> tuple[list[GlobalRef], list[str]]:
    """(globals of every pickle found, reasons a file could not be vetted)."""
    refs: list[GlobalRef] = []
    problems: list[str] = []
    for path in _files(folder):
        relative = path.relative_to(folder).as_posix()
        try:
            found = _scan_file(path)
        except ArchiveRefused as exc:
            problems.append(f"{relative}: {exc}")
            continue
        except (ArchiveCorrupt, PickleScanError, OSError) as exc:
            if path.suffix.lower() in _PICKLE_SUFFIXES:
                problems.append(f"{relative}: cannot be checked ({exc})")
            continue
        refs += [GlobalRef(r.module, r.name, f"{relative}!{r.member}" if r.member else relative, r.opcode)
                 for r in found]
    return refs, problems


def _files(folder: Path):
    count = 0
    base_depth = len(folder.parts)
    for root, dirs, files in os.walk(folder, followlinks=False):
        if len(Path(root).parts) - base_depth >= MAX_DEPTH:
            dirs[:] = []
        dirs.sort()
        for name in sorted(files):
            path = Path(root, name)
            if path.is_symlink() or not path.is_file():
                continue
            count += 1
            if count > MAX_FILES:
                raise ArchiveRefused(f"more than {MAX_FILES} files in the model folder")
            yield path


def _scan_file(path: Path) -> list[GlobalRef]:
    with open(path, "rb") as handle:
        head = handle.read(4096)
        if head.startswith(b"PK"):
            with Archive.open_path(path) as archive:
                return [ref for member in pickle_members(archive)
                        for ref in scan_pickle(archive.open(member), member)]
        handle.seek(0)
        if is_legacy_magic(head):
            return scan_legacy_stream(handle)
        if head[:1] == b"\x80" or path.suffix.lower() in _PICKLE_SUFFIXES and head[:1] in (b"(", b"c", b"]", b"}"):
            return scan_pickle(handle, "")
    return []
