"""Scan every file of a model folder that a user or a training script could unpickle.

A malicious ``pytorch_model.bin`` next to the ``model.safetensors`` that is actually loaded, or a
stray ``*.pkl``, is still a payload someone will open. So every file is recognised by its content,
never by its name:

* zip archives (torch.save, ``.npz``): their ``.pkl`` members, and their ``.npy`` members that hold
  object arrays (``numpy.load(allow_pickle=True)`` unpickles those);
* legacy torch streams, and pickles of any protocol: a file is a pickle when its opcodes, read from
  the first byte, reach a call (a protocol-0 pickle has no header, and ``pickle.load`` runs what it
  has read before it meets garbage, so a complete parse is not required);
* ``.npy`` files holding object arrays (their payload is a pickle);
* gzip/bz2/xz files, decompressed (bounded: a decompression bomb is refused) and recognised again.

The walk follows symbolic links, to files and to folders, as torch and Python do, but a link that
resolves outside the audited folder is refused (the file it names is not part of the model that
was vetted). Nothing is cut off silently: more than ``MAX_DEPTH`` nested folders or
``MAX_FILES`` files is a refusal naming the path.
"""
from __future__ import annotations

import ast
import bz2
import gzip
import io
import lzma
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from evalguard.loading.archive import Archive, ArchiveCorrupt, ArchiveRefused
from evalguard.loading.pickle_scan import (
    GlobalRef,
    PickleScanError,
    ScanLimit,
    is_legacy_magic,
    pickle_members,
    scan_legacy_stream,
    scan_pickle,
)

MAX_FILES = 10_000
MAX_DEPTH = 32
#: A compressed file may expand to at most this much (read as a stream, never held whole).
MAX_DECOMPRESSED = 512 << 20
_CHUNK = 1 << 20
MAX_NESTED_COMPRESSION = 2
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt", ".joblib", ".dat", ".npy", ".npz")
NPY_MAGIC = b"\x93NUMPY"
#: numpy refuses .npy headers over 10,000 bytes unless told otherwise; this covers its prefix too.
_NPY_HEAD = 16 << 10
_COMPRESSED = ((b"\x1f\x8b", "gzip", lambda f: gzip.GzipFile(fileobj=f, mode="rb")),
               (b"BZh", "bz2", bz2.BZ2File), (b"\xfd7zXZ\x00", "xz", lzma.LZMAFile))


@dataclass
class FolderScan:
    """``refs``: globals of every pickle; ``refusals``: why the folder cannot be vetted (EG905);
    ``constructs``: code-running constructs that are not globals (object arrays: EG901)."""

    refs: list[GlobalRef] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    constructs: list[str] = field(default_factory=list)


class DecompressionBomb(ScanLimit):
    pass


class BrokenPickle(Exception):
    """A stream that calls something and then stops parsing: refused whatever the file's name."""


def scan_folder(folder: Path) -> FolderScan:
    scan = FolderScan()
    for path, relative in _files(folder, scan.refusals):
        try:
            found = _scan_file(path, relative, scan)
        except (ArchiveRefused, DecompressionBomb, BrokenPickle) as exc:
            scan.refusals.append(f"{relative}: {exc}")
            continue
        except (ArchiveCorrupt, PickleScanError, OSError, EOFError, lzma.LZMAError, zlib.error, ValueError) as exc:
            if path.suffix.lower() in _PICKLE_SUFFIXES:
                scan.refusals.append(f"{relative}: cannot be checked ({exc})")
            continue
        scan.refs += [GlobalRef(r.module, r.name, f"{relative}!{r.member}" if r.member else relative, r.opcode)
                      for r in found]
    return scan


def _files(folder: Path, refusals: list[str]):
    """(path, path relative to ``folder``) of every regular file, symlinks followed inside ``folder``."""
    root = folder.resolve()
    roots = _allowed_roots(folder)
    seen_dirs, seen_files = {root}, set()
    pending = [(folder, 0)]
    count = 0
    while pending:
        current, depth = pending.pop()
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name, reverse=True)
        except OSError as exc:
            refusals.append(f"{_relative(Path(current), folder)}: cannot be listed ({exc.strerror})")
            continue
        for entry in entries:
            path = Path(entry.path)
            relative = _relative(path, folder)
            try:
                real = path.resolve(strict=True)
            except (OSError, RuntimeError):
                continue  # a dangling or looping link names nothing a loader could open
            if not any(real.is_relative_to(allowed) for allowed in roots):
                refusals.append(f"{relative}: a symbolic link to {real}, outside the audited folder")
                continue
            if real.is_dir():
                if real in seen_dirs:
                    continue
                if depth + 1 > MAX_DEPTH:
                    refusals.append(f"{relative}: folders nested more than {MAX_DEPTH} deep (not scanned)")
                    continue
                seen_dirs.add(real)
                pending.append((path, depth + 1))
            elif real.is_file() and real not in seen_files:
                seen_files.add(real)
                count += 1
                if count > MAX_FILES:
                    raise ArchiveRefused(f"more than {MAX_FILES} files in the model folder (at {relative})")
                yield path, relative


def _allowed_roots(folder: Path) -> list[Path]:
    """Where the folder's links may point: inside it, and for a snapshot of the Hugging Face cache
    (``models--org--name/snapshots/REV``, whose files are links to ``../../blobs/HASH``) the
    blobs of that one repository."""
    roots = [folder.resolve()]
    snapshots = folder.resolve().parent
    if snapshots.name == "snapshots" and snapshots.parent.name.startswith("models--") \
            and (snapshots.parent / "blobs").is_dir():
        roots.append((snapshots.parent / "blobs").resolve())
    return roots


def _relative(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix() if path != folder else "."


def _scan_file(path: Path, relative: str, scan: FolderScan) -> list[GlobalRef]:
    with open(path, "rb") as handle:
        head = handle.read(4096)
        if head.startswith(b"PK"):
            with Archive.open_path(path) as archive:
                return _scan_archive(archive, relative, scan)
        handle.seek(0)
        return _scan_stream(handle, head, relative, scan, 0)


def _scan_stream(stream: IO[bytes], head: bytes, relative: str, scan: FolderScan, level: int) -> list[GlobalRef]:
    """Globals of one (possibly decompressed) file; ``stream`` is at its start."""
    for magic, kind, opener in _COMPRESSED:
        if head.startswith(magic):
            return _scan_compressed(stream, kind, opener, relative, scan, level)
    if head.startswith(b"PK"):
        data = stream.read(MAX_DECOMPRESSED + 1)
        if len(data) > MAX_DECOMPRESSED:
            raise DecompressionBomb(f"a compressed zip archive larger than {MAX_DECOMPRESSED >> 20} MiB")
        return _scan_archive(Archive.from_bytes(data, relative), relative, scan)
    if is_legacy_magic(head):
        return scan_legacy_stream(stream)
    if head.startswith(NPY_MAGIC):
        return _scan_npy(stream, relative, scan)
    return _scan_if_pickle(stream)


def _scan_compressed(stream, kind: str, opener, relative: str, scan: FolderScan, level: int) -> list[GlobalRef]:
    if level >= MAX_NESTED_COMPRESSION:
        raise DecompressionBomb(f"{kind} compression nested more than {MAX_NESTED_COMPRESSION} deep")
    inner = _Capped(opener(stream), f"{kind} data")
    head = inner.peek(4096)
    return _scan_stream(inner, head, relative, scan, level + 1)


class _Capped(io.RawIOBase):
    """A decompressing reader that refuses to yield more than ``MAX_DECOMPRESSED`` bytes.

    Bytes already decompressed but not yet consumed wait in ``_buffer`` from ``_pos`` on, so a
    byte-by-byte reader (pickletools) costs linear time, never a copy of the buffer per read.
    """

    def __init__(self, inner, what: str):
        self._inner, self._what, self._read = inner, what, 0
        self._buffer, self._pos = b"", 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._read - (len(self._buffer) - self._pos)

    def peek(self, size: int) -> bytes:
        self._fill(size)
        return self._buffer[self._pos:self._pos + size]

    def read(self, size: int = -1) -> bytes:
        size = MAX_DECOMPRESSED + 1 if size is None or size < 0 else size
        self._fill(size)
        out = self._buffer[self._pos:self._pos + size]
        self._pos += len(out)
        return out

    def readline(self, size: int = -1) -> bytes:
        """pickletools reads text opcodes line by line: chunked, and bounded like everything else."""
        newline = self._buffer.find(b"\n", self._pos)
        if newline >= 0:
            line = self._buffer[self._pos:newline + 1]
            self._pos = newline + 1
            return line
        parts = [self._buffer[self._pos:]]
        self._buffer, self._pos = b"", 0
        while True:
            chunk = self._take(_CHUNK)
            if not chunk:
                break
            newline = chunk.find(b"\n")
            if newline >= 0:
                parts.append(chunk[:newline + 1])
                self._buffer = chunk[newline + 1:]
                break
            parts.append(chunk)
        return b"".join(parts)

    def _fill(self, wanted: int) -> None:
        """Make ``wanted`` unconsumed bytes available if the stream has them (reading ahead a chunk)."""
        missing = wanted - (len(self._buffer) - self._pos)
        if missing > 0:
            self._buffer = self._buffer[self._pos:] + self._take(max(missing, _CHUNK))
            self._pos = 0

    def _take(self, size: int) -> bytes:
        chunks = []
        while size > 0:
            data = self._inner.read(min(size, _CHUNK))
            if not data:
                break
            self._read += len(data)
            if self._read > MAX_DECOMPRESSED:
                raise DecompressionBomb(f"{self._what} expand to more than {MAX_DECOMPRESSED >> 20} MiB "
                                        "(a decompression bomb?)")
            chunks.append(data)
            size -= len(data)
        return b"".join(chunks)


def _scan_archive(archive: Archive, relative: str, scan: FolderScan) -> list[GlobalRef]:
    refs = [ref for member in pickle_members(archive) for ref in scan_pickle(archive.open(member), member)]
    for member in archive.names():
        if member.lower().endswith(".pkl") or not archive.head(member, _NPY_HEAD).startswith(NPY_MAGIC):
            continue
        if _member_has_objects(archive, member):
            refs += [GlobalRef(r.module, r.name, member, r.opcode)
                     for r in _scan_npy(archive.open(member), f"{relative}!{member}", scan)]
    return refs


def _member_has_objects(archive: Archive, member: str) -> bool:
    """Only the header is read to decide (a numeric array's data are never inflated here), unless
    the header is longer than the head read (numpy reads long headers when allow_pickle is set)."""
    try:
        return _npy_has_objects(io.BytesIO(archive.head(member, _NPY_HEAD)))
    except PickleScanError:
        return _npy_has_objects(archive.open(member))


def _scan_npy(stream: IO[bytes], relative: str, scan: FolderScan) -> list[GlobalRef]:
    """A ``.npy`` array: numeric arrays are raw bytes; an object array's data is a pickle."""
    if not _npy_has_objects(stream):
        return []
    scan.constructs.append(f"{relative}: an object array (numpy.load(allow_pickle=True) unpickles it)")
    return scan_pickle(stream, "")


def _npy_has_objects(stream: IO[bytes]) -> bool:
    """Reads the header (leaving ``stream`` at the data) and says whether its dtype holds objects."""
    import numpy
    from numpy.lib import format as npy_format

    prefix = stream.read(len(NPY_MAGIC) + 2)
    major = prefix[len(NPY_MAGIC)] if len(prefix) == len(NPY_MAGIC) + 2 else 0
    size_bytes = 2 if major == 1 else 4
    raw_size = stream.read(size_bytes)
    if major not in (1, 2, 3) or len(raw_size) != size_bytes:
        raise PickleScanError("not a .npy header numpy reads")
    header = stream.read(int.from_bytes(raw_size, "little"))
    try:
        fields = ast.literal_eval(header.decode("utf-8" if major == 3 else "latin-1"))
        dtype = npy_format.descr_to_dtype(fields["descr"])
    except (ValueError, SyntaxError, TypeError, KeyError, MemoryError, RecursionError) as exc:
        raise PickleScanError(f"unreadable .npy header ({type(exc).__name__})") from None
    return isinstance(dtype, numpy.dtype) and dtype.hasobject


def _scan_if_pickle(stream: IO[bytes]) -> list[GlobalRef]:
    """Globals of ``stream`` if it is a pickle of any protocol; [] for a file that is not one.

    A stream whose opcodes break off is still a pickle when the part that parses names a global
    and calls it: ``pickle.load`` would have run that call before meeting the bad bytes.
    """
    partial: list[GlobalRef] = []
    calls: list[str] = []
    try:
        return scan_pickle(stream, "", partial=partial, calls=calls)
    except PickleScanError as exc:
        if partial and calls:
            raise BrokenPickle(f"a pickle that breaks off after calling {partial[0].full} ({exc})") from None
        return []
