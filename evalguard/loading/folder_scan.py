"""Scan every file of a model folder that a user or a training script could unpickle.

A malicious ``pytorch_model.bin`` next to the ``model.safetensors`` that is actually loaded, or a
stray ``*.pkl``, is still a payload someone will open. So every file is recognised by its content,
never by its name:

* zip archives (torch.save, ``.npz``): every member, by content (``.pkl`` members must be pickles;
  ``.npy`` members are read for object arrays, which ``numpy.load(allow_pickle=True)`` unpickles);
* legacy torch streams, and pickles of any protocol: a file is a pickle when its opcodes, read from
  the first byte, reach a call (a protocol-0 pickle has no header, and ``pickle.load`` runs what it
  has read before it meets garbage, so a complete parse is not required);
* ``.npy`` files holding object arrays (their payload is a pickle), headers read by numpy's reader;
* gzip/bz2/xz/zlib/LZMA-alone data, decompressed (bounded: a decompression bomb is refused) and
  recognised again.

Content that is recognised but cannot be checked (a corrupt archive or stream, a header numpy
rejects, zstd data, a tar archive) is refused, whatever the file is called. The scan is bounded
by an opcode budget per pickle and a wall-clock budget per folder (``MAX_SCAN_SECONDS``).

The walk follows symbolic links, to files and to folders, as torch and Python do, but a link that
resolves outside the audited folder is refused (the file it names is not part of the model that
was vetted). Nothing is cut off silently: more than ``MAX_DEPTH`` nested folders or
``MAX_FILES`` files is a refusal naming the path.
"""
from __future__ import annotations

import bz2
import io
import lzma
import os
import tarfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from evalguard.loading.archive import Archive, ArchiveCorrupt, ArchiveRefused
from evalguard.loading.pickle_scan import (
    GlobalRef,
    PickleScanError,
    ScanBudgetExceeded,
    ScanLimit,
    check_deadline,
    is_legacy_magic,
    pickle_members,
    scan_deadline,
    scan_legacy_stream,
    scan_pickle,
)

MAX_FILES = 10_000
MAX_DEPTH = 32
#: A compressed file may expand to at most this much (read as a stream, never held whole).
MAX_DECOMPRESSED = 512 << 20
_CHUNK = 1 << 16
#: Wall-clock budget of one folder scan; past it the folder is refused (EG905) naming the limit.
MAX_SCAN_SECONDS = 60.0
#: numpy reads any header size when allow_pickle is set; longer ones than this are refused.
_NPY_MAX_HEADER = 1 << 20
MAX_NESTED_COMPRESSION = 2
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt", ".joblib", ".dat", ".npy", ".npz")
NPY_MAGIC = b"\x93NUMPY"
#: numpy refuses .npy headers over 10,000 bytes unless told otherwise; this covers its prefix too.
_NPY_HEAD = 16 << 10


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
    with scan_deadline(MAX_SCAN_SECONDS, "scanning the folder"):
        for path, relative in _files(folder, scan.refusals):
            try:
                check_deadline()
                found = _scan_file(path, relative, scan)
            except ScanBudgetExceeded as exc:
                scan.refusals.append(f"{relative}: {exc}")
                break
            except (ArchiveRefused, ScanLimit, BrokenPickle, Unscannable) as exc:
                scan.refusals.append(f"{relative}: {exc}")
                continue
            except _UNREADABLE as exc:
                kind = _recognised(path)
                if kind or path.suffix.lower() in _PICKLE_SUFFIXES:
                    what = f"recognised as {kind}" if kind else "named like a pickle"
                    scan.refusals.append(f"{relative}: {what} but cannot be checked "
                                         f"({type(exc).__name__}: {exc})".replace("\n", " "))
                continue
            scan.refs += [GlobalRef(r.module, r.name, f"{relative}!{r.member}" if r.member else relative, r.opcode)
                          for r in found]
    return scan


_UNREADABLE = (ArchiveCorrupt, PickleScanError, OSError, EOFError, lzma.LZMAError, zlib.error, ValueError)


def _recognised(path: Path) -> str | None:
    """What the file's content is, when evalguard knows its format (then failing to check it is a
    refusal, whatever the file is called)."""
    try:
        with open(path, "rb") as handle:
            return recognise(handle.read(4096), handle)
    except OSError:
        return None


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
        handle.seek(0)
        if _is_zip(head, handle):
            with Archive.open_path(path) as archive:
                return _scan_archive(archive, relative, scan, 0)
        return _scan_stream(handle, head, relative, scan, 0)


def recognise(head: bytes, stream: IO[bytes] | None = None) -> str | None:
    """The container or data format a file starting with ``head`` holds, None for other content
    (which may still be a pickle: those have no magic number)."""
    kind = _strong_kind(head, stream)
    if kind:
        return kind
    sniffed = [kind for kind, make in _SNIFFED if _decodes(make, head)]
    return f"{sniffed[0]} data" if sniffed else None


def _strong_kind(head: bytes, stream: IO[bytes] | None) -> str | None:
    """Formats with a magic number their readers require (checked before any weaker reading)."""
    compressed = _compressed_kind(head)
    if compressed:
        return f"{compressed[0]} data"
    undecodable = _undecodable(head)
    if undecodable:
        return f"{undecodable} data"
    if _is_zip(head, stream):
        return "zip archive"
    if _is_tar(head):
        return "tar archive"
    if is_legacy_magic(head):
        return "legacy torch.save file"
    if head.startswith(NPY_MAGIC):
        return ".npy array"
    return None


def _compressed_kind(head: bytes):
    for magic, kind, make in _COMPRESSED:
        if head.startswith(magic) and (kind != "bz2" or head[3:4] in b"123456789"):
            return kind, make
    return None


def _scan_stream(stream: IO[bytes], head: bytes, relative: str, scan: FolderScan, level: int) -> list[GlobalRef]:
    """Globals of one (possibly decompressed) file; ``stream`` is at its start."""
    compressed = _compressed_kind(head)
    if compressed:
        return _scan_compressed(stream, *compressed, relative, scan, level)
    undecodable = _undecodable(head)
    if undecodable:
        raise Unscannable(f"{undecodable}-compressed data, which evalguard has no decoder for (cannot be checked; "
                          "joblib, for one, reads it)")
    if _is_zip(head, stream):
        if level >= MAX_NESTED_COMPRESSION:
            raise DecompressionBomb(f"archives and compression nested more than {MAX_NESTED_COMPRESSION} deep")
        data = stream.read(MAX_DECOMPRESSED + 1)
        if len(data) > MAX_DECOMPRESSED:
            raise DecompressionBomb(f"a compressed zip archive larger than {MAX_DECOMPRESSED >> 20} MiB")
        return _scan_archive(Archive.from_bytes(data, relative), relative, scan, level + 1)
    if _is_tar(head):
        raise Unscannable("a tar archive: torch.load reads one as a legacy (pre-0.4) tar checkpoint and "
                          "unpickles its members; evalguard does not vet tar archives")
    if is_legacy_magic(head):
        return scan_legacy_stream(stream)
    if head.startswith(NPY_MAGIC):
        return _scan_npy(stream, relative, scan)
    sniffed = [(kind, make) for kind, make in _SNIFFED if _decodes(make, head)]
    if sniffed:
        return _scan_each_reading(stream, sniffed, relative, scan, level)
    return _scan_if_pickle(stream)


def _scan_each_reading(stream: IO[bytes], sniffed, relative: str, scan: FolderScan, level: int) -> list[GlobalRef]:
    """Bytes whose first bytes decode as zlib or LZMA alone may as well be a pickle (those two
    "magic numbers" are weak: a pickle's first bytes can decode too): every reading is scanned."""
    if not (getattr(stream, "seekable", None) and stream.seekable()):
        stream = io.BytesIO(stream.read(MAX_DECOMPRESSED + 1))   # a decoded stream: capped by _Capped
    start = stream.tell()
    refs = _scan_if_pickle(stream)
    for kind, make in sniffed:
        stream.seek(start)
        refs += _scan_compressed(stream, kind, make, relative, scan, level)
    return refs


_EOCD, _CENTRAL, _ZIP64_LOCATOR = b"PK\x05\x06", b"PK\x01\x02", b"PK\x06\x07"


def _is_zip(head: bytes, stream: IO[bytes] | None) -> bool:
    """A zip archive as torch and numpy recognise one (a local header, or the end record of an
    empty archive, at byte 0) or as ``zipfile`` does (pandas, scripts): an end record in the last
    64 KiB whose central directory is where it says, wherever the archive starts."""
    if head.startswith((b"PK\x03\x04", _EOCD)):
        return True
    if stream is None or not (getattr(stream, "seekable", None) and stream.seekable()):
        return False
    start = stream.tell()
    try:
        return _has_zip_directory(stream, start)
    finally:
        stream.seek(start)


def _has_zip_directory(stream: IO[bytes], start: int) -> bool:
    end = stream.seek(0, io.SEEK_END)
    begin = max(start, end - (22 + 0xFFFF))
    stream.seek(begin)
    tail = stream.read(end - begin)
    pos = tail.rfind(_EOCD)
    while pos >= 0:
        if len(tail) - pos >= 22:
            if pos >= 20 and tail[pos - 20:pos - 16] == _ZIP64_LOCATOR:
                return True
            cd_size = int.from_bytes(tail[pos + 12:pos + 16], "little")
            at = begin + pos - cd_size
            if at >= start:
                stream.seek(at)
                if stream.read(4) == _CENTRAL:
                    return True
        pos = tail.rfind(_EOCD, 0, pos)
    return False


class Unscannable(Exception):
    """Recognised content that evalguard cannot vet: refused (EG905) whatever the file's name."""


def _zlib(wbits: int):
    return lambda: _ZlibDecoder(wbits)


class _ZlibDecoder:
    """``zlib.decompressobj`` with the interface of ``lzma``/``bz2``'s decompressors."""

    def __init__(self, wbits: int):
        self._inner, self._tail = zlib.decompressobj(wbits), b""

    @property
    def eof(self) -> bool:
        return self._inner.eof

    @property
    def unused_data(self) -> bytes:
        return self._inner.unused_data

    @property
    def needs_input(self) -> bool:
        return not self._tail

    def decompress(self, data: bytes, max_length: int) -> bytes:
        out = self._inner.decompress(self._tail + data, max_length)
        self._tail = self._inner.unconsumed_tail
        return out


_ZLIB_CMF = {bytes([(bits << 4) | 8]) for bits in range(8)}
_DECODE_ERRORS = (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError)
#: Compression formats joblib (among others) can read, with no decoder in evalguard's environment.
_UNDECODABLE = ((b"\x28\xb5\x2f\xfd", "zstd"), (b"\x04\x22\x4d\x18", "lz4"))


def _undecodable(head: bytes) -> str | None:
    return next((kind for magic, kind in _UNDECODABLE if head.startswith(magic)), None)
#: Formats with a magic number: (magic, name, decoder factory).
_COMPRESSED = ((b"\x1f\x8b\x08", "gzip", _zlib(31)), (b"BZh", "bz2", bz2.BZ2Decompressor),
               (b"\xfd7zXZ\x00", "xz", lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ)))
#: Formats with a weak or no magic number (zlib: 2 bytes; LZMA "alone": a properties byte and sizes):
#: recognised when their first bytes decode (``lzma.open`` and ``zlib.decompress`` read them).
_SNIFFED = (("zlib", _zlib(15)), ("LZMA (alone)", lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE)))


def _decodes(make, head: bytes) -> bool:
    """Whether the first bytes decode. Checked first, as the decoders check them: zlib's CMF byte
    (deflate, window up to 32 KiB); LZMA alone's properties byte (< 225) and the range coder's
    first byte (0)."""
    zlib_header = head[:1] in _ZLIB_CMF and int.from_bytes(head[:2], "big") % 31 == 0
    lzma_header = len(head) > 13 and head[0] < 225 and head[13] == 0
    if not (zlib_header or lzma_header):
        return False
    try:
        return bool(make().decompress(head, 1))
    except (*_DECODE_ERRORS, MemoryError):   # MemoryError: an LZMA header asking for a huge dictionary
        return False


def _is_tar(head: bytes) -> bool:
    """What ``tarfile.open(mode="r:")`` (torch's legacy loader) accepts as a first header: a
    512-byte block whose checksum matches (old V7 headers have no "ustar" magic)."""
    if len(head) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _scan_compressed(stream, kind: str, make, relative: str, scan: FolderScan, level: int) -> list[GlobalRef]:
    if level >= MAX_NESTED_COMPRESSION:
        raise DecompressionBomb(f"{kind} compression nested more than {MAX_NESTED_COMPRESSION} deep")
    lenient = any(kind == name for name, _ in _SNIFFED)
    inner = _Capped(_Decoded(stream, make, kind, lenient), f"{kind} data")
    head = inner.peek(4096)
    return _scan_stream(inner, head, relative, scan, level + 1)


class _Decoded:
    """The data of a compressed stream and of the streams that follow it (gzip members, bz2/xz
    streams), decoded on demand. Bytes after the last stream that do not start a valid stream
    end the data, as they end what the formats' own readers deliver (``gzip`` raises there, but
    only after the data before it was read: trailing garbage never hides a stream).

    A corrupt or truncated first stream raises (recognised data that cannot be read is refused),
    unless ``lenient``: for formats recognised only by their first bytes decoding (zlib, LZMA
    alone), whose "magic" raw tensor data can imitate, the data decoded before the error is what
    a loader reads too, so it is scanned and the error ends it."""

    def __init__(self, source, make, kind: str, lenient: bool):
        self._source, self._make, self._kind, self._lenient = source, make, kind, lenient
        self._decoder, self._first, self._done, self._pending = make(), True, False, b""

    def read(self, size: int) -> bytes:
        while not self._done:
            if self._decoder.eof:
                self._next_stream()
                continue
            data = b""
            if self._decoder.needs_input:
                data, self._pending = (self._pending or self._source.read(_CHUNK)), b""
                if not data:
                    if self._first and not self._lenient:
                        raise EOFError(f"{self._kind} ends before its end-of-stream marker (truncated)")
                    self._done = True
                    break
            try:
                out = self._decoder.decompress(data, size)
            except _DECODE_ERRORS:
                if self._first and not self._lenient:
                    raise
                self._done = True   # bytes that are not (or no longer) a stream: the end of the data
                break
            if out:
                return out
        return b""

    def _next_stream(self) -> None:
        check_deadline()
        self._pending = self._decoder.unused_data + self._pending
        if not self._pending:
            self._pending = self._source.read(_CHUNK)
        if not self._pending:
            self._done = True
            return
        self._decoder, self._first = self._make(), False


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


def _scan_archive(archive: Archive, relative: str, scan: FolderScan, level: int) -> list[GlobalRef]:
    """Every member, by content: ``.pkl`` members must be pickles (torch unpickles them); any
    other member is scanned like a file (a loader may open a member of any name: pandas reads a
    zip's one member, ``numpy.load`` an ``.npz``'s ``.npy`` members)."""
    refs = [ref for member in pickle_members(archive) for ref in scan_pickle(archive.open(member), member)]
    for member in archive.names():
        if member.endswith("/") or member.lower().endswith(".pkl"):
            continue
        head = archive.head(member, 4096)
        if head.startswith(NPY_MAGIC) and not _member_has_objects(archive, member):
            continue    # a numeric array: its data are never inflated here
        found = _scan_stream(archive.stream(member), head, f"{relative}!{member}", scan, level)
        refs += [GlobalRef(r.module, r.name, f"{member}!{r.member}" if r.member else member, r.opcode)
                 for r in found]
    return refs


def _member_has_objects(archive: Archive, member: str) -> bool:
    """Only the header is read to decide (a numeric array's data are never inflated here), unless
    the header is longer than the head read (numpy reads long headers when allow_pickle is set)."""
    try:
        return _npy_has_objects(io.BytesIO(archive.head(member, _NPY_HEAD)))
    except PickleScanError:
        return _npy_has_objects(archive.stream(member))


def _scan_npy(stream: IO[bytes], relative: str, scan: FolderScan) -> list[GlobalRef]:
    """A ``.npy`` array: numeric arrays are raw bytes; an object array's data is a pickle."""
    if not _npy_has_objects(stream):
        return []
    scan.constructs.append(f"{relative}: an object array (numpy.load(allow_pickle=True) unpickles it)")
    return scan_pickle(stream, "")


def _npy_has_objects(stream: IO[bytes]) -> bool:
    """Reads the header (leaving ``stream`` at the data) and says whether its dtype holds objects.

    The header is read by numpy's own reader, as ``numpy.load`` reads it (including its
    fallback for Python 2 headers such as ``(1L,)``); it parses literals and never unpickles."""
    import numpy

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # numpy warns about the Python 2 headers it converts
            dtype = _read_npy_dtype(stream)
    except (ValueError, SyntaxError, TypeError, KeyError, MemoryError, RecursionError, EOFError,
            AttributeError, UnicodeDecodeError) as exc:
        raise PickleScanError(f"a .npy header numpy's reader rejects ({type(exc).__name__}: {exc})"[:300]) from None
    return isinstance(dtype, numpy.dtype) and dtype.hasobject


def _read_npy_dtype(stream: IO[bytes]):
    from numpy.lib import format as npy_format

    version = npy_format.read_magic(stream)
    if version == (1, 0):
        return npy_format.read_array_header_1_0(stream, max_header_size=_NPY_MAX_HEADER)[2]
    if version == (2, 0):
        return npy_format.read_array_header_2_0(stream, max_header_size=_NPY_MAX_HEADER)[2]
    from numpy.lib import _format_impl  # version 3.0 (utf-8 header): no public reader

    return _format_impl._read_array_header(stream, version, max_header_size=_NPY_MAX_HEADER)[2]


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
