"""Read zip archives the way torch's reader does, and refuse any archive where that is ambiguous.

torch opens ``.pt``/TorchScript/``.pt2`` archives with miniz (``PyTorchStreamReader``), Python's
``zipfile`` differently: miniz compares names case-insensitively, picks one of several members with
the same name, and trusts absolute offsets where ``zipfile`` re-bases them for prepended data. A
scanner that reads with one and a loader that reads with the other can vet different bytes from
the ones loaded. So this reader accepts only archives with a single unambiguous reading:

* one end-of-central-directory record at the very end, the central directory right before it,
  and the members laid out back to back from byte 0 up to the central directory (nothing
  prepended, appended, hidden between or overlapping members);
* member names that are relative, plain ASCII paths without ``..``/``.``/``\\``, unique even
  when compared case-insensitively (torch archives must also sit under one root folder: ``sniff``);
* members stored or deflated, not encrypted, with bounded counts and declared sizes.

Data is read from the offset the local header gives, exactly where miniz reads it. Everything
here is linear in the size of the central directory; inflating is capped per member and in total.
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MAX_MEMBERS = 200_000
#: A deflated member may inflate to at most this much (torch only deflates TorchScript code).
MAX_INFLATED_MEMBER = 64 * 1024 * 1024
MAX_INFLATED_TOTAL = 256 * 1024 * 1024
MAX_RATIO = 200              # inflated/compressed for members above 1 MiB
MAX_NAME = 1024

_EOCD, _EOCD64, _LOC64 = b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"
_CENTRAL, _LOCAL, _DESCRIPTOR = b"PK\x01\x02", b"PK\x03\x04", b"PK\x07\x08"
_STORED, _DEFLATED = 0, 8


class ArchiveCorrupt(Exception):
    """Not a complete zip archive (truncated, garbage)."""


class ArchiveRefused(Exception):
    """A zip archive whose reading is ambiguous or outside what torch writes; the message says why."""


@dataclass(frozen=True)
class Member:
    name: str
    header_offset: int
    data_offset: int
    compressed_size: int
    size: int
    method: int
    crc: int


class Archive:
    """A vetted archive: ``names()``, ``size(name)``, ``read(name)``, ``open(name)``."""

    def __init__(self, source: IO[bytes], members: list[Member], label: str):
        self._source = source
        self.members = {m.name: m for m in members}
        self.label = label
        self.prefix = members[0].name.split("/", 1)[0] + "/" if members else ""
        self._inflated = 0

    @classmethod
    def open_path(cls, path: Path) -> Archive:
        handle = open(path, "rb")  # noqa: SIM115 - owned by the Archive, closed by close()/__exit__
        try:
            return cls(handle, parse_members(handle), str(path))
        except BaseException:
            handle.close()
            raise

    @classmethod
    def from_bytes(cls, data: bytes, label: str) -> Archive:
        stream = io.BytesIO(data)
        return cls(stream, parse_members(stream), label)

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Archive:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def names(self) -> list[str]:
        return list(self.members)

    def inner_names(self) -> list[str]:
        """Names without the root folder, as torch's reader lists its records."""
        return [n[len(self.prefix):] for n in self.members]

    def size(self, name: str) -> int:
        return self.members[name].size

    def read(self, name: str) -> bytes:
        member = self.members[name]
        self._source.seek(member.data_offset)
        raw = self._source.read(member.compressed_size)
        if len(raw) != member.compressed_size:
            raise ArchiveCorrupt(f"member {name} is truncated")
        if member.method == _DEFLATED:
            self._inflated += member.size
            if self._inflated > MAX_INFLATED_TOTAL:
                raise ArchiveRefused(f"members inflate to more than {MAX_INFLATED_TOTAL >> 20} MiB in total")
            inflater = zlib.decompressobj(-15)
            try:
                data = inflater.decompress(raw, member.size + 1)
            except zlib.error as exc:
                raise ArchiveCorrupt(f"member {name}: {exc}") from None
            if len(data) != member.size or inflater.unconsumed_tail:
                raise ArchiveRefused(f"member {name} inflates to a size other than the {member.size} bytes declared")
        else:
            data = raw
        if zlib.crc32(data) != member.crc:
            raise ArchiveCorrupt(f"member {name} fails its CRC check")
        return data

    def head(self, name: str, size: int) -> bytes:
        """The first ``size`` bytes of a member, reading (or inflating) no more than that.
        Unchecked against the CRC: for recognising a member's format, never for vetting it."""
        member = self.members[name]
        self._source.seek(member.data_offset)
        if member.method != _DEFLATED:
            return self._source.read(min(size, member.size))
        raw = self._source.read(min(member.compressed_size, size + 1024))
        try:
            return zlib.decompressobj(-15).decompress(raw, size)
        except zlib.error:
            return b""

    def open(self, name: str) -> IO[bytes]:
        return io.BytesIO(self.read(name))

    def stream(self, name: str) -> IO[bytes]:
        """A member's bytes as a stream, for scanning by content: a stored member (a tensor's
        storage may be gigabytes) is read from the archive as it is consumed and, like ``head``,
        not checked against its CRC (a loader may use the bytes before it checks, so they are
        scanned whatever the CRC says); a deflated one is inflated whole (capped) and checked."""
        member = self.members[name]
        if member.method == _DEFLATED:
            return self.open(name)
        return io.BufferedReader(_Slice(self._source, member.data_offset, member.size), 8192)


class _Slice(io.RawIOBase):
    """``size`` bytes of ``source`` from ``offset``, read on demand (the source may be shared)."""

    def __init__(self, source: IO[bytes], offset: int, size: int):
        self._source, self._offset, self._end, self._pos = source, offset, offset + size, offset

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos - self._offset

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: self._offset, io.SEEK_CUR: self._pos, io.SEEK_END: self._end}[whence]
        self._pos = min(max(base + pos, self._offset), self._end)
        return self.tell()

    def readinto(self, buffer) -> int:
        wanted = min(len(buffer), self._end - self._pos)
        if wanted <= 0:
            return 0
        self._source.seek(self._pos)
        data = self._source.read(wanted)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)


def parse_members(stream: IO[bytes]) -> list[Member]:
    stream.seek(0, io.SEEK_END)
    total = stream.tell()
    count, cd_size, cd_offset, cd_end = _find_directory(stream, total)
    if count > MAX_MEMBERS:
        raise ArchiveRefused(f"{count} members (more than {MAX_MEMBERS})")
    if cd_offset + cd_size != cd_end:
        raise ArchiveRefused("the central directory is not where the end record says (data prepended, "
                             "appended or a second archive concatenated)")
    stream.seek(cd_offset)
    directory = stream.read(cd_size)
    if len(directory) != cd_size:
        raise ArchiveCorrupt("central directory is truncated")
    members = _central_entries(directory, count)
    _check_names([m[0] for m in members])
    return _check_layout(stream, members, cd_offset)


def _find_directory(stream: IO[bytes], total: int) -> tuple[int, int, int, int]:
    """(member count, directory size, directory offset, where the directory must end)."""
    tail_start = max(0, total - (22 + 65535))
    stream.seek(tail_start)
    tail = stream.read()
    pos = tail.rfind(_EOCD)
    while pos >= 0 and len(tail) - pos >= 22:
        comment_len = struct.unpack("<H", tail[pos + 20:pos + 22])[0]
        if pos + 22 + comment_len == len(tail):
            break
        pos = tail.rfind(_EOCD, 0, pos)
    else:
        raise ArchiveCorrupt("no end-of-central-directory record (truncated?)")
    eocd_at = tail_start + pos
    disk, cd_disk, _n_disk, count, cd_size, cd_offset, _ = struct.unpack("<HHHHIIH", tail[pos + 4:pos + 22])
    if disk or cd_disk:
        raise ArchiveRefused("a multi-disk archive")
    # zip64 (torch always writes it): a locator right before the end record points at the zip64 record.
    locator = b""
    if eocd_at >= 20:
        stream.seek(eocd_at - 20)
        locator = stream.read(20)
    if locator[:4] != _LOC64:
        if count == 0xFFFF or 0xFFFFFFFF in (cd_size, cd_offset):
            raise ArchiveCorrupt("zip64 locator missing")
        return count, cd_size, cd_offset, eocd_at
    (record_at,) = struct.unpack("<Q", locator[8:16])
    if record_at + 56 != eocd_at - 20:
        raise ArchiveRefused("data between the zip64 end record and its locator")
    stream.seek(record_at)
    record = stream.read(56)
    if record[:4] != _EOCD64:
        raise ArchiveCorrupt("zip64 end record missing")
    _, _, _, _, _, count64, count_total, cd_size, cd_offset = struct.unpack("<QHHIIQQQQ", record[4:56])
    if count64 != count_total:
        raise ArchiveRefused("a multi-disk archive")
    return count_total, cd_size, cd_offset, record_at


def _central_entries(directory: bytes, count: int) -> list[tuple]:
    entries, pos = [], 0
    for _ in range(count):
        if directory[pos:pos + 4] != _CENTRAL:
            raise ArchiveCorrupt("central directory entry expected")
        (flags, method, crc, csize, usize, name_len, extra_len, comment_len,
         _disk, offset) = struct.unpack("<8xHH4xIIIHHHH6xI", directory[pos:pos + 46])
        name_raw = directory[pos + 46:pos + 46 + name_len]
        extra = directory[pos + 46 + name_len:pos + 46 + name_len + extra_len]
        pos += 46 + name_len + extra_len + comment_len
        if pos > len(directory):
            raise ArchiveCorrupt("central directory is truncated")
        if flags & 0x41:
            raise ArchiveRefused("an encrypted member")
        if method not in (_STORED, _DEFLATED):
            raise ArchiveRefused(f"a member compressed with method {method} (torch stores or deflates)")
        usize, csize, offset = _zip64_fields(extra, usize, csize, offset)
        if method == _STORED and usize != csize:
            raise ArchiveRefused("a stored member whose sizes disagree")
        if method == _DEFLATED and (usize > MAX_INFLATED_MEMBER or (usize > 1 << 20 and usize > MAX_RATIO * csize)):
            raise ArchiveRefused(f"a compressed member declaring {usize} bytes from {csize} (a decompression bomb)")
        try:
            name = name_raw.decode("ascii")
        except UnicodeDecodeError:
            raise ArchiveRefused("a member name that is not plain ASCII") from None
        entries.append((name, offset, csize, usize, method, crc, flags))
    if pos != len(directory):
        raise ArchiveRefused("bytes in the central directory beyond its declared entries")
    return entries


def _zip64_fields(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack("<HH", extra[pos:pos + 4])
        body = extra[pos + 4:pos + 4 + size]
        if tag == 1:
            values = list(struct.unpack(f"<{len(body) // 8}Q", body[:len(body) // 8 * 8]))
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
        pos += 4 + size
    return usize, csize, offset


def _check_names(names: list[str]) -> None:
    seen: dict[str, str] = {}
    for name in names:
        parts = name.split("/")
        bad = (not name or len(name) > MAX_NAME or name.startswith("/") or "\\" in name or ":" in name
               or any(ord(c) < 32 or ord(c) == 127 for c in name)
               or any(p in ("", ".", "..") for p in (parts[:-1] if name.endswith("/") else parts)))
        if bad:
            raise ArchiveRefused(f"member name {name[:80]!r} is absolute, parent-relative or not a plain path")
        folded = name.lower()
        if folded in seen:
            what = "duplicate member name" if seen[folded] == name else "member names differing only in case"
            raise ArchiveRefused(f"{what}: {seen[folded][:80]!r} and {name[:80]!r} (torch's reader would pick one)")
        seen[folded] = name


def _check_layout(stream: IO[bytes], entries: list[tuple], cd_offset: int) -> list[Member]:
    """Members back to back from byte 0 to the central directory, local and central headers agreeing."""
    members = []
    expected = 0
    for name, offset, csize, usize, method, crc, flags in sorted(entries, key=lambda e: e[1]):
        if offset != expected:
            raise ArchiveRefused(f"bytes outside any member before {name[:80]!r} (hidden or overlapping data)")
        stream.seek(offset)
        header = stream.read(30)
        if len(header) < 30 or header[:4] != _LOCAL:
            raise ArchiveCorrupt(f"local header of {name} missing")
        local_flags, local_method, name_len, extra_len = struct.unpack("<2xHH16xHH", header[4:])
        local_name = stream.read(name_len)
        if local_name != name.encode("ascii") or local_method != method or (local_flags & 0x08) != (flags & 0x08):
            raise ArchiveRefused(f"local and central headers of {name[:80]!r} disagree")
        data_offset = offset + 30 + name_len + extra_len
        end = data_offset + csize
        if flags & 0x08:
            end = _skip_descriptor(stream, end, name)
        if end > cd_offset:
            raise ArchiveRefused(f"member {name[:80]!r} overlaps the central directory")
        members.append(Member(name, offset, data_offset, csize, usize, method, crc))
        expected = end
    if expected != cd_offset:
        raise ArchiveRefused("bytes between the last member and the central directory (hidden data)")
    members.sort(key=lambda m: m.header_offset)
    return members


def _skip_descriptor(stream: IO[bytes], at: int, name: str) -> int:
    stream.seek(at)
    head = stream.read(4)
    if head == _DESCRIPTOR:
        # torch writes signature + crc + 32- or 64-bit sizes; the following header tells which.
        for length in (16, 24):
            stream.seek(at + length)
            if stream.read(4) in (_LOCAL, _CENTRAL):
                return at + length
    raise ArchiveRefused(f"member {name[:80]!r} has a data descriptor torch does not write")
