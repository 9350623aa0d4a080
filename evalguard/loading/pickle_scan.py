"""List every global a pickle references, without executing any of it.

``pickletools.genops`` only parses opcodes; nothing is imported or called. A small stack
simulation resolves protocol-4 ``STACK_GLOBAL`` (whose module and name are strings pushed
earlier, possibly through the memo); a ``STACK_GLOBAL`` whose operands are not plain string
constants is reported as unresolvable, which the allow-list always refuses.
"""
from __future__ import annotations

import contextlib
import contextvars
import io
import pickletools
import struct
import time
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

from evalguard.errors import InternalError

#: Name used for a global whose module/name cannot be read statically.
UNRESOLVED = "<unresolved>"
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
               "SHORT_BINUNICODE", "BINUNICODE8"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_INT_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_CONST_OPS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_TUPLE_OPS = {"TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_TUPLE"}
_MARK = object()        # a MARK on the simulated stack
_UNKNOWN = object()     # any value the scan does not track

#: The first pickle of a legacy (non-zip) ``torch.save`` file: PROTO 2, LONG1 of MAGIC_NUMBER, STOP.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC_NUMBER.to_bytes(10, "little") + b"."
#: A legacy torch file holds 5 pickles (magic, protocol, sys_info, object, storage keys),
#: then raw storage bytes that must not be parsed as opcodes.
LEGACY_PICKLE_COUNT = 5
#: Real pickles keep their stack shallow (the pickler batches items by 1000); a file that
#: piles up millions of items is an attack on the scanner's memory.
MAX_STACK = 1_000_000
#: ``builtins.range(n)``/``bytearray(n)``... with n above this are refused (``OVERSIZED``).
MAX_CONSTRUCTOR_SIZE = 1 << 24
OVERSIZED = "REDUCE (oversized)"
#: ``opcode`` of a GlobalRef recording that the pickle calls the global (REDUCE/INST/OBJ).
CALLED = "REDUCE (called)"
#: ``opcode`` of a GlobalRef that reports a state no pickler writes: "BUILD (forged state: why)";
#: module/name are the class of the object whose state it is.
FORGED_STATE = "BUILD (forged state"
_CREATE_OPS = {"REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ", "INST"}
_CALL_OPS = {"REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"}
_MUTATE_OPS = {"SETITEM", "SETITEMS", "APPEND", "APPENDS", "ADDITEMS"}
#: Registered C++ classes a pickled ``torch.ScriptObject`` may name: torch's quantized packed
#: weights (their ``__setstate__`` re-packs through torch's own validated prepack ops). Any other
#: name would let the file pick whichever registered class's ``__setstate__`` runs.
PACKED_PARAMS_CLASSES = frozenset(f"__torch__.torch.classes.{name}" for name in (
    "quantized.LinearPackedParamsBase", "quantized.Conv2dPackedParamsBase", "quantized.Conv3dPackedParamsBase",
    "quantized.EmbeddingPackedParamsBase", "rnn.CellParamsBase"))
_NUMPY_ROOTS = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")


class PickleScanError(Exception):
    """The bytes are not a complete, well-formed pickle."""


class ScanLimit(Exception):
    """A limit of the stream being read (e.g. a decompression cap) was hit: passed through as is."""


class ScanBudgetExceeded(ScanLimit):
    """The scan's opcode or wall-clock budget ran out: the file cannot be vetted in bounded time."""


#: Opcodes one pickle may have. A torch ``data.pkl`` spends a few dozen per tensor (a 10,000-tensor
#: checkpoint stays under 500,000); a flood of cheap opcodes would otherwise make the scan, not the
#: load, the slow part (tens of seconds for 40 MiB of NONE/POP).
MAX_OPCODES = 2_000_000
_CLOCK_EVERY = 1 << 16
#: When set (``time.monotonic()`` seconds), every pickle scan stops past it (see ``scan_deadline``).
_deadline: contextvars.ContextVar[tuple[float, str] | None] = contextvars.ContextVar("scan_deadline", default=None)


@contextlib.contextmanager
def scan_deadline(seconds: float, what: str):
    """Bound every pickle scan started inside the block to ``seconds`` of wall-clock time in all."""
    token = _deadline.set((time.monotonic() + seconds, f"{what} takes more than {seconds:g} s"))
    try:
        yield
    finally:
        _deadline.reset(token)


def check_deadline() -> None:
    limit = _deadline.get()
    if limit is not None and time.monotonic() > limit[0]:
        raise ScanBudgetExceeded(f"the scan's time budget ran out ({limit[1]})")


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


def scan_pickle(stream: IO[bytes], member: str = "", storages: list | None = None,
                partial: list | None = None, calls: list | None = None) -> list[GlobalRef]:
    """Globals of the one pickle starting at the stream's position; stops at its STOP.

    ``storages``, when given, receives the ``StorageRef`` of every persistent storage id.
    ``partial``, when given, is the list the globals are collected in (still filled when the
    stream turns out not to be a complete pickle); ``calls`` receives the name of every opcode
    that calls something (REDUCE, BUILD, INST, OBJ, NEWOBJ, NEWOBJ_EX) as it is reached.
    """
    found: list[GlobalRef] = partial if partial is not None else []
    called: set[str] = set()
    stack: list = []
    memo: dict = {}
    try:
        for opcode, arg, _pos in _read_ops(stream):
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
            elif name in _CONST_OPS:
                pushed = _CONST_OPS[name]
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
            if calls is not None and name in _CALL_OPS:
                calls.append(name)
            if name in _TUPLE_OPS:
                pushed = tuple(popped)
            elif name == "BINPERSID" and storages is not None:
                _record_storage(popped[0], storages)
            elif name == "REDUCE" and _oversized_call(popped):
                found.append(GlobalRef(popped[0].module, popped[0].name, member=member, opcode=OVERSIZED))
            if name in _CREATE_OPS:
                pushed = _created(name, arg, popped)
                _record_call(pushed, called, found, member)
            elif name == "BUILD":
                pushed = popped[0]
                problem = _check_build(popped[0], popped[1])
                if problem:
                    found.append(GlobalRef(*problem, member=member, opcode=FORGED_STATE))
            elif name in _MUTATE_OPS:
                pushed = popped[0]       # the same dict/list/set/object, mutated in place
            stack.extend(_MARK if item is pickletools.markobject else pushed for item in opcode.stack_after)
            if len(stack) > MAX_STACK:
                raise PickleScanError(f"more than {MAX_STACK} items on the pickle stack")
    except (PickleScanError, ScanLimit):
        raise
    except Exception as exc:  # noqa: BLE001 - the scanner's own bookkeeping broke: EG900, never "corrupt"
        raise InternalError("pickle scanner", exc) from exc
    return found


def _read_ops(stream: IO[bytes]):
    """The opcodes of one pickle as ``pickletools.genops`` yields them, with what it raises on bad
    bytes as ``PickleScanError`` (a corrupt file); an exception in the scanner's own bookkeeping
    stays evalguard's bug. Numeric text arguments are parsed the way the unpickler parses them,
    and at most ``MAX_OPCODES`` opcodes are read (then ``ScanBudgetExceeded``)."""
    ops = _genops(stream)
    while True:
        try:
            op = next(ops)
        except StopIteration:
            return
        except ScanLimit:   # the stream's own limit (a decompression bomb): a refusal, not bad bytes
            raise
        except Exception as exc:  # noqa: BLE001 - the readers raise ValueError/EOFError/UnicodeDecodeError... on bad bytes
            raise PickleScanError(f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
        yield op


def _genops(stream: IO[bytes]):
    """``pickletools.genops`` with the unpickler's own reading of INT and LONG (``int(text, 0)``:
    ``I0x10`` is a valid INT to ``pickle.load`` while pickletools' ``int(text)`` rejects it)."""
    getpos = stream.tell if hasattr(stream, "tell") else (lambda: None)
    count = 0
    while True:
        count += 1
        if count > MAX_OPCODES:
            raise ScanBudgetExceeded(f"a pickle with more than {MAX_OPCODES:,} opcodes (the scan's opcode budget)")
        if count % _CLOCK_EVERY == 0:
            check_deadline()
        pos = getpos()
        code = stream.read(1)
        opcode = pickletools.code2op.get(code.decode("latin-1"))
        if opcode is None:
            raise ValueError("pickle exhausted before seeing STOP" if code == b"" else f"at position {pos}, opcode {code!r} unknown")
        reader = _NUMERIC_TEXT.get(opcode.name)
        if reader is not None:
            arg = reader(stream)
        else:
            arg = None if opcode.arg is None else opcode.arg.reader(stream)
        yield opcode, arg, pos
        if code == b".":
            return


def _text_line(stream: IO[bytes]) -> bytes:
    line = stream.readline()
    if not line.endswith(b"\n"):
        raise ValueError("no newline found when trying to read a numeric argument")
    return line[:-1]


def _unpickler_int(text: bytes) -> int:
    """``pickle``'s ``int(text, 0)``; pickletools' plain ``int(text)`` as a fallback keeps the
    scan going wherever either reads a number (reading on is the cautious side)."""
    try:
        return int(text, 0)
    except ValueError:
        return int(text)


def _read_int(stream: IO[bytes]):
    text = _text_line(stream)
    if text in (b"00", b"01"):
        return text == b"01"
    return _unpickler_int(text)


def _read_long(stream: IO[bytes]) -> int:
    text = _text_line(stream)
    return _unpickler_int(text[:-1] if text.endswith(b"L") else text)


_NUMERIC_TEXT = {"INT": _read_int, "LONG": _read_long}


class _Obj:
    """An object the pickle creates (REDUCE/NEWOBJ/NEWOBJ_EX/OBJ/INST), tracked by identity.

    The memo and DUP hand out the same ``_Obj``, so a BUILD reached through ``BINGET`` is counted
    on the object it really mutates. ``builds`` counts the BUILDs applied to it; ``valid_dtype``
    is set once a numpy dtype received exactly the state numpy itself writes.
    """

    __slots__ = ("cls", "args", "how", "builds", "valid_dtype")

    def __init__(self, cls, args, how: str):
        self.cls, self.args, self.how = cls, args, how
        self.builds = 0
        self.valid_dtype = False


def _created(name: str, arg, popped: list) -> _Obj:
    if name == "INST":
        module, _, qual = str(arg).partition(" ")
        return _Obj(GlobalRef(*normalise(module, qual), opcode=name), tuple(popped), name)
    if name == "OBJ":
        return _Obj(popped[0] if popped else _UNKNOWN, tuple(popped[1:]), name)
    return _Obj(popped[0], popped[1], name)


def _record_call(obj: _Obj, called: set[str], found: list, member: str) -> None:
    """A global the pickle *calls* (REDUCE/OBJ run ``cls(*args)``, so its ``__init__``), once per
    name: the allow-list judges what calling it runs. NEWOBJ only runs ``cls.__new__``; an INST
    ref (which calls) is already in ``found`` with opcode "INST"."""
    cls = obj.cls
    if obj.how in ("REDUCE", "OBJ") and isinstance(cls, GlobalRef) and cls.full not in called:
        called.add(cls.full)
        found.append(GlobalRef(cls.module, cls.name, member=member, opcode=CALLED))


def _check_build(obj, state) -> tuple[str, str] | None:
    """(module, name + reason) when BUILD gives ``obj`` a state no pickler writes; else None.

    The unpickler calls ``obj.__setstate__(state)`` (or updates its ``__dict__``) right away, so
    the state is judged as it is at this BUILD. A pickler writes one BUILD per object, right
    after creating it: a second BUILD (the object fetched back from the memo) is a forgery
    whatever the class, and so is a BUILD applied to a global itself (a class or function).
    """
    if isinstance(obj, GlobalRef):
        return obj.module, f"{obj.name}: BUILD applied to the global itself"
    if not isinstance(obj, _Obj):
        return None
    obj.builds += 1
    cls = obj.cls if isinstance(obj.cls, GlobalRef) else GlobalRef(UNRESOLVED, UNRESOLVED)
    if obj.builds > 1:
        return cls.module, f"{cls.name}: state set twice (a second BUILD on the same object, reached through the memo or DUP)"
    if cls.full == "torch.ScriptObject":
        name = state[1] if isinstance(state, tuple) and len(state) == 2 else None
        if name not in PACKED_PARAMS_CLASSES:
            return cls.module, (f"{cls.name}: a ScriptObject of class {name!r} (only torch's quantized "
                                "packed weights are rebuilt)")
    elif _is_dtype_class(cls):
        if obj.how != "REDUCE" or not _is_numpy_dtype(cls):
            return cls.module, f"{cls.name}: dtype created by {obj.how} of {cls.full} and then given a state " \
                               "(numpy writes numpy.dtype(typestr, False, True) + its own state)"
        if not _valid_dtype_state(obj.args, state):
            return cls.module, f"{cls.name}: dtype state numpy would not write (object flags or a non-numeric type)"
        obj.valid_dtype = True
    elif _is_ndarray(cls):
        dtype = state[2] if isinstance(state, tuple) and len(state) == 5 else None
        if obj.how != "REDUCE" or not (isinstance(dtype, _Obj) and dtype.valid_dtype and dtype.builds == 1):
            return cls.module, f"{cls.name}: array state whose dtype was not rebuilt the way numpy writes it"
    return None


def _is_dtype_class(ref: GlobalRef) -> bool:
    """numpy.dtype or one of its per-type classes (``numpy.dtypes.Float64DType``...)."""
    return _within_numpy(ref.module) and (ref.name == "dtype" or ref.name.endswith("DType"))


def _is_ndarray(ref: GlobalRef) -> bool:
    """An array rebuilt by numpy's ``_reconstruct`` or by the ``ndarray`` class itself."""
    return _within_numpy(ref.module) and ref.name in ("_reconstruct", "ndarray")


def _within_numpy(module: str) -> bool:
    return module == "numpy" or module.startswith("numpy.")


def _valid_dtype_state(args, state) -> bool:
    """``numpy.dtype(typestr, False, True)`` with exactly the state numpy writes for it.

    numpy's ``dtype.__setstate__`` trusts the flags and sizes it is given; a forged state (object
    flags on a float type, an object dtype whose array data are raw bytes) makes numpy treat file
    bytes as pointers and crashes the process. Only plain numeric and bool types pass, and only
    as the copy numpy asks for (``copy=True``: never the process-wide builtin dtype object).
    """
    if not (isinstance(args, tuple) and len(args) == 3 and isinstance(args[0], str)
            and args[1] is False and args[2] is True):
        return False
    typestr = args[0]
    if not (1 <= len(typestr) <= 4 and typestr[0] in "?bBhHiIlLqQefdgFDGiufcb" and typestr[1:].isdigit()
            or typestr in ("?", "b1")):
        return False
    try:
        import numpy

        expected = numpy.dtype(typestr).__reduce__()[2]
    except Exception:  # noqa: BLE001 - numpy missing or an odd type string: fail closed
        return False
    if not (isinstance(state, tuple) and len(state) == len(expected)):
        return False
    return all(got in ("<", ">", "|", "=") if index == 1 else (type(got) is type(want) and got == want)
               for index, (got, want) in enumerate(zip(state, expected)))


def _is_numpy_dtype(func) -> bool:
    return isinstance(func, GlobalRef) and func.name == "dtype" and func.module in _NUMPY_ROOTS


def _oversized_call(popped: list) -> bool:
    """``builtins.X(n)`` with an integer the file chose large enough to exhaust memory."""
    func, args = popped
    if not isinstance(func, GlobalRef) or func.module != "builtins":
        return False
    items, pending = [], [args]
    while pending and len(items) < 64:
        item = pending.pop()
        if isinstance(item, tuple):
            pending.extend(item)
        else:
            items.append(item)
    return any(isinstance(i, int) and not isinstance(i, bool) and abs(i) > MAX_CONSTRUCTOR_SIZE for i in items)


def _pop_inputs(opcode, stack: list) -> list:
    """Pop what the opcode consumes: its inputs in stack order (the MARK itself left out)."""
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
        below = [_pop(stack) for _ in range(before.index(pickletools.markobject))]
        return below[::-1] + items[::-1]
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


def is_legacy_magic(head: bytes) -> bool:
    """Whether ``head`` starts with torch's legacy magic number pickled in *any* protocol.

    torch reads the magic number with a full unpickler, so a protocol-0 or protocol-4 magic
    works as well as the protocol-2 one ``torch.save`` writes; a scanner that only knows the
    latter would read one pickle and miss the four that follow.
    """
    if head.startswith(TORCH_LEGACY_MAGIC):
        return True
    values = []
    try:
        for opcode, arg, _pos in pickletools.genops(io.BytesIO(head)):
            if opcode.name in ("PROTO", "FRAME", "MEMOIZE") or opcode.name in _PUT_OPS:
                continue
            if opcode.name == "STOP":
                break
            values.append((opcode.name, arg))
            if len(values) > 1:
                return False
    except (ValueError, EOFError, UnicodeDecodeError, struct.error, IndexError):  # not a whole pickle in the head
        return False
    return len(values) == 1 and values[0][0] in _INT_OPS and values[0][1] == LEGACY_MAGIC_NUMBER


def pickle_members(archive) -> list[str]:
    """Members torch may unpickle: every ``.pkl`` (compared case-insensitively, as torch's reader does)."""
    return [n for n in archive.names() if n.lower().endswith(".pkl")]


def scan_archive_members(archive, members: Iterable[str]) -> list[GlobalRef]:
    found: list[GlobalRef] = []
    for member in members:
        found += scan_pickle(archive.open(member), member)
    return found


def scan_torch_payload(data: bytes, member: str, depth: int = 0) -> list[GlobalRef]:
    """Bytes that torch would unpickle: a torch.save zip, a legacy stream or one pickle."""
    from evalguard.loading.archive import Archive

    if data.startswith(b"PK"):
        if depth > 2:
            raise PickleScanError("archives nested too deeply")
        inner = Archive.from_bytes(data, member)
        return [ref for name in pickle_members(inner)
                for ref in scan_torch_payload(inner.read(name), f"{member}!{name}", depth + 1)]
    if is_legacy_magic(data[:4096]):
        return [GlobalRef(r.module, r.name, f"{member}!{r.member}", r.opcode)
                for r in scan_legacy_stream(io.BytesIO(data))]
    return scan_pickle_bytes(data, member)
