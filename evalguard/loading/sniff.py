"""Recognise a model file by its first bytes (extensions lie; content does not)."""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from evalguard.loading.pickle_scan import is_legacy_magic

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
#: Largest safetensors header we accept (the format itself caps it at 100 MB).
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024


@dataclass
class Sniffed:
    """What the bytes are: ``container`` plus, for zips, the archive layout."""

    container: str          # empty | zip | torch-legacy | pickle | safetensors | onnx | text | unknown
    layout: str = ""        # zip: torch-save | torchscript | pt2 | other | corrupt | refused
    prefix: str = ""        # zip: the top folder every torch archive member lives in
    members: list[str] = field(default_factory=list)
    reason: str = ""        # zip: why it is corrupt or refused


def sniff(path: Path) -> Sniffed:
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if not head:
        return Sniffed("empty")
    if head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
        return _sniff_zip(path)
    if is_legacy_magic(head):
        return Sniffed("torch-legacy")
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return Sniffed("pickle")
    if _looks_like_safetensors(path, head):
        return Sniffed("safetensors")
    if path.suffix.lower() == ".onnx" or head[:1] == b"\x08":
        # ModelProto starts with ir_version (field 1, varint); confirmed by parsing later.
        return Sniffed("onnx")
    if _looks_like_text(head):
        return Sniffed("text")
    return Sniffed("unknown")


def _sniff_zip(path: Path) -> Sniffed:
    from evalguard.loading.archive import Archive, ArchiveCorrupt, ArchiveRefused

    try:
        with Archive.open_path(path) as archive:
            names, prefix = archive.names(), archive.prefix
    except ArchiveRefused as exc:
        return Sniffed("zip", layout="refused", reason=str(exc))
    except (ArchiveCorrupt, OSError, ValueError, EOFError) as exc:
        return Sniffed("zip", layout="corrupt", reason=str(exc))
    # torch's reader matches names case-insensitively (collisions were refused above).
    inner = {n[len(prefix):].lower() for n in names}
    roots = {n.split("/", 1)[0] if "/" in n else "" for n in names}
    if len(roots) > 1:
        if any(n.rsplit("/", 1)[-1].lower() in ("data.pkl", "archive_format") for n in names):
            # torch reads the root folder of the first member only; another reader may pick another.
            return Sniffed("zip", layout="refused", reason="torch records under more than one root folder")
        return Sniffed("zip", layout="other", members=names)
    if "archive_format" in inner or any(n.startswith("models/") for n in inner):
        layout = "pt2"
    elif "data.pkl" in inner and ("constants.pkl" in inner or any(n.startswith("code/") for n in inner)):
        layout = "torchscript"
    elif "data.pkl" in inner:
        layout = "torch-save"
    else:
        layout = "other"
    return Sniffed("zip", layout=layout, prefix=prefix, members=names)


def _looks_like_safetensors(path: Path, head: bytes) -> bool:
    if len(head) < 9:
        return False
    (size,) = struct.unpack("<Q", head[:8])
    if size > SAFETENSORS_MAX_HEADER or 8 + size > path.stat().st_size:
        return False
    return head[8:9] == b"{"


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the 4096-byte boundary is still text.
        return exc.start >= len(head) - 4
    return True


def read_safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes, offsets)."""
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(size))
