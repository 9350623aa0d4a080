"""List every global a pickle references, without executing any of it.

``pickletools.genops`` only parses opcodes; nothing is imported or called. A small stack
simulation resolves protocol-4 ``STACK_GLOBAL`` (whose module and name are strings pushed
earlier, possibly through the memo); a ``STACK_GLOBAL`` whose operands are not plain string
constants is reported as unresolvable, which the allow-list always refuses.
"""
from __future__ import annotations

import io
import pickletools
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from dataclasses import dataclass
from typing import IO, Iterable

#: Name used for a global whose module/name cannot be read statically.
UNRESOLVED = "<unresolved>"
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
               "SHORT_BINUNICODE", "BINUNICODE8"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_INT_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_TUPLE_OPS = {"TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_TUPLE"}
_MARK = object()        # a MARK on the simulated stack
_UNKNOWN = object()     # any value the scan does not track

#: The first pickle of a legacy (non-zip) ``torch.save`` file: PROTO 2, LONG1 of MAGIC_NUMBER, STOP.
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
#: A legacy torch file holds 5 pickles (magic, protocol, sys_info, object, storage keys),
#: then raw storage bytes that must not be parsed as opcodes.
LEGACY_PICKLE_COUNT = 5
#: Real pickles keep their stack shallow (the pickler batches items by 1000); a file that
#: piles up millions of items is an attack on the scanner's memory.
MAX_STACK = 1_000_000


class PickleScanError(Exception):
    """The bytes are not a complete, well-formed pickle."""


@dataclass(frozen=True)
class GlobalRef:
    """One global referenced by a pickle: ``module.name`` and where it was found."""

    module: str
    name: str
    member: str = ""        # zip member or "pickle #N" of a legacy stream; "" for a plain file
    opcode: str = "GLOBAL"

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


def normalise(module: str, name: str) -> tuple[str, str]:
    """Python-2 names as the torch loader maps them (``__builtin__.set`` -> ``builtins.set``)."""
    if (module, name) in NAME_MAPPING:
        return NAME_MAPPING[(module, name)]
    return IMPORT_MAPPING.get(module, module), name


@dataclass(frozen=True)
class StorageRef:
    """A tensor storage a torch pickle points to (``persistent_id`` of a torch.save archive)."""

    key: str
    numel: int
    storage_type: GlobalRef


def scan_pickle(stream: IO[bytes], member: str = "", storages: list | None = None) -> list[GlobalRef]:
    """Globals of the one pickle starting at the stream's position; stops at its STOP.

    ``storages``, when given, receives the ``StorageRef`` of every persistent storage id.
    """
    found: list[GlobalRef] = []
    stack: list = []
    memo: dict = {}
    try:
        for opcode, arg, _pos in pickletools.genops(stream):
            name = opcode.name
            pushed: object = _UNKNOWN
            if name in ("GLOBAL", "INST"):
                module, _, qual = str(arg).partition(" ")
                pushed = GlobalRef(*normalise(module, qual), member=member, opcode=name)
                found.append(pushed)
            elif name == "STACK_GLOBAL":
                qual, module = (stack[-1], stack[-2]) if len(stack) >= 2 else (_UNKNOWN, _UNKNOWN)
                if isinstance(module, str) and isinstance(qual, str):
                    pushed = GlobalRef(*normalise(module, qual), member=member, opcode=name)
                else:
                    pushed = GlobalRef(UNRESOLVED, UNRESOLVED, member=member, opcode=name)
                found.append(pushed)
            elif name.startswith("EXT"):
                # copyreg extension codes name a global through a process-wide registry.
                found.append(GlobalRef("copyreg", f"<extension {arg}>", member=member, opcode=name))
            elif name in _STRING_OPS:
                pushed = arg.decode("latin-1") if isinstance(arg, bytes) else arg
            elif name in _INT_OPS:
                pushed = arg
            elif name in _GET_OPS:
                pushed = memo.get(arg, _UNKNOWN)
            elif name in _PUT_OPS and stack:
                memo[arg] = stack[-1]
            elif name == "MEMOIZE" and stack:
                # Mirrors the unpickler exactly: the index is len(memo), PUT entries included.
                memo[len(memo)] = pushed = stack[-1]
            elif name == "DUP" and stack:
                pushed = stack[-1]
            popped = _pop_inputs(opcode, stack)
            if name in _TUPLE_OPS:
                pushed = tuple(popped)
            elif name == "BINPERSID" and storages is not None:
                _record_storage(popped[0], storages)
            stack.extend(_MARK if item is pickletools.markobject else pushed for item in opcode.stack_after)
            if len(stack) > MAX_STACK:
                raise PickleScanError(f"more than {MAX_STACK} items on the pickle stack")
    except PickleScanError:
        raise
    except Exception as exc:  # genops raises ValueError/EOFError/UnicodeDecodeError... on bad bytes
        raise PickleScanError(f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    return found


def _pop_inputs(opcode, stack: list) -> list:
    """Pop what the opcode consumes; returns the items after the MARK (or the plain inputs)."""
    before = opcode.stack_before
    if pickletools.markobject in before:
        items = []
        while True:
            if not stack:
                raise PickleScanError("MARK missing")
            item = stack.pop()
            if item is _MARK:
                break
            items.append(item)
        for _ in range(before.index(pickletools.markobject)):
            _pop(stack)
        return items[::-1]
    return [_pop(stack) for _ in before][::-1]


def _pop(stack: list):
    if not stack:
        raise PickleScanError("stack underflow")
    return stack.pop()


def _record_storage(pid, storages: list) -> None:
    # torch.save: ("storage", StorageType, key, location, numel)
    if (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], GlobalRef)
            and isinstance(pid[2], str) and isinstance(pid[4], int)):
        storages.append(StorageRef(key=pid[2], numel=pid[4], storage_type=pid[1]))


def scan_pickle_bytes(data: bytes, member: str = "") -> list[GlobalRef]:
    return scan_pickle(io.BytesIO(data), member)


def scan_legacy_stream(stream: IO[bytes]) -> list[GlobalRef]:
    """The pickles of a legacy ``torch.save`` file (the storage bytes after them are skipped)."""
    found: list[GlobalRef] = []
    for index in range(1, LEGACY_PICKLE_COUNT + 1):
        found += scan_pickle(stream, member=f"pickle #{index}")
    return found


def zip_pickle_members(archive: zipfile.ZipFile, suffixes: Iterable[str] = (".pkl",)) -> list[str]:
    return [n for n in archive.namelist() if n.endswith(tuple(suffixes)) and not n.endswith("/")]


def scan_zip_members(archive: zipfile.ZipFile, members: Iterable[str]) -> list[GlobalRef]:
    """Scan the named members of an open zip, streaming (a member is never read whole)."""
    found: list[GlobalRef] = []
    for member in members:
        with archive.open(member) as stream:
            found += scan_pickle(stream, member)
    return found



def scan_torch_payload(data: bytes, member: str, depth: int = 0) -> list[GlobalRef]:
    """Bytes that torch would unpickle: a torch.save zip, a legacy stream or one pickle."""
    if data.startswith(b"PK\x03\x04"):
        if depth > 2:
            raise PickleScanError("archives nested too deeply")
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            return [ref for name in zip_pickle_members(inner)
                    for ref in scan_torch_payload(inner.read(name), f"{member}!{name}", depth + 1)]
    if data.startswith(TORCH_LEGACY_MAGIC):
        return [GlobalRef(r.module, r.name, f"{member}!{r.member}", r.opcode)
                for r in scan_legacy_stream(io.BytesIO(data))]
    if data[:1] == b"\x80":
        return scan_pickle_bytes(data, member)
    raise PickleScanError("not a pickle or torch archive")
