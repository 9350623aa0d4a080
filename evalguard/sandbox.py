"""Run one step that may crash, hang or misbehave in a separate, limited process.

``run_isolated("pkg.module:function", *args)`` calls the function in a child process with JSON
arguments. The child first limits itself: address space and CPU time (``setrlimit``), no new
privileges, and, where the kernel supports Landlock, no file-system writes outside a fresh
temporary folder (and no TCP where the Landlock ABI covers it). The parent waits with a
wall-clock timeout, so a segfault, an abort, a hang or a memory bomb in the child becomes a
``SandboxError`` naming the reason, never a crash of the audit.

The child is a fork of this process on Linux: it has torch and the trusted packages imported
already, which saved the ~2 s a fresh ``python -m evalguard.sandbox`` spent importing them per
trial load (issue 18). It closes every inherited file descriptor but the result pipe, resets
the signal handlers, runs in its own session and, as before, never runs interpreter teardown.
Elsewhere, or with ``EVALGUARD_SANDBOX_SPAWN=1``, it is a fresh interpreter as before. The
address-space limit counts from the child's size at the start (a fork inherits the parent's
mappings; a CUDA build of torch maps GiBs).

Requests and results travel as JSON lines over a pipe, never pickles: the child handles hostile
data and the parent must not unpickle anything it says. ``landlock_status()`` reports availability.

This module is evalguard's one isolation primitive: the trial load (``run_isolated``) and the
per-target workers (``evalguard.execution``) both limit and confine their child with
``enter_child``, talk over ``send``/``read_messages``, kill with ``kill_group`` and read how a
child ended with ``Ending``. Every limit is relative to what this process may still ask for
(its hard limits): under ``ulimit -v`` a child gets what is left, and a child that cannot set
a limit says so in its result instead of dying silently.
"""
from __future__ import annotations

import ctypes
import json
import os
import platform
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace

#: Defaults; ``EVALGUARD_SANDBOX_TIMEOUT`` (seconds) overrides the wall-clock limit.
WALL_SECONDS = 120.0
CPU_SECONDS = 300
MEMORY_BYTES = 8 << 30

# Landlock (linux/landlock.h); the syscall numbers are shared by x86_64 and aarch64.
_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446
_PR_SET_NO_NEW_PRIVS = 38
_CREATE_VERSION = 1
_RULE_PATH_BENEATH = 1
_READ_ACCESS = 0x1 | 0x4 | 0x8            # execute, read file, read dir: left unrestricted
_WRITE_ACCESS_BY_ABI = {1: 0x1FF2, 2: 0x3FF2, 3: 0x7FF2, 5: 0xFFF2}   # everything else
_NET_TCP = 0x1 | 0x2                      # bind, connect (ABI 4+)
_WRITE_FILE, _TRUNCATE, _IOCTL_DEV = 0x2, 0x4000, 0x8000


class SandboxError(Exception):
    """The isolated step did not return: ``reason`` is timeout | signal | exit | error | memory | limits,
    or setup when the child's own set-up (entering its limits, importing the entry) failed: evalguard's bug."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    """Per child: wall-clock seconds (parent-side), CPU seconds and address space on top of
    the child's size at the start (``RLIMIT_AS``), each capped at what this process's hard
    limits allow; ``None`` leaves that limit as inherited. ``memory_flag`` names where the
    memory limit came from in messages (``--memory-limit`` when the user set it)."""

    wall_seconds: float | None = WALL_SECONDS
    cpu_seconds: int | None = CPU_SECONDS
    memory_bytes: int | None = MEMORY_BYTES
    memory_flag: str = "the sandbox's memory limit"


def run_isolated(entry: str, *args, limits: Limits | None = None):
    """Call ``entry`` ("module:function") with JSON-able ``args`` in a limited child; return its JSON result."""
    limits = limits or Limits()
    wall = float(os.environ.get("EVALGUARD_SANDBOX_TIMEOUT", limits.wall_seconds or WALL_SECONDS))
    with tempfile.TemporaryDirectory(prefix="evalguard-sandbox-") as scratch:
        request = {"entry": entry, "args": list(args), "scratch": scratch, "sys_path": sys.path,
                   "limits": asdict(limits)}
        with tempfile.TemporaryFile(dir=scratch) as log:
            if forks():
                pid, read = _fork_child(request, log)
            else:
                pid, read = _spawn_child(request, log, scratch)
            ending = Ending(limits=replace(limits, wall_seconds=wall))
            ending.timed_out = not read_messages(read, time.monotonic() + wall, ending.receive)
            if ending.timed_out:
                kill_group(pid)
            ending.returncode = _reap(pid)
            ending.log_tail = _tail(log)
    return ending.value()


def forks() -> bool:
    """Whether the child is a fork of this process (Linux, unless EVALGUARD_SANDBOX_SPAWN=1)."""
    return platform.system() == "Linux" and hasattr(os, "fork") and os.environ.get("EVALGUARD_SANDBOX_SPAWN") != "1"


def _fork_child(request: dict, log) -> tuple[int, int]:
    read, write = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:   # the child: never returns
        die_with_parent(parent)
        os.close(read)
        _forked_child(request, write, log.fileno())
    os.close(write)
    return pid, read


def _spawn_child(request: dict, log, scratch: str) -> tuple[int, int]:
    read, write = os.pipe()
    env = {**os.environ, "TMPDIR": scratch, "HOME": scratch, "PYTHONDONTWRITEBYTECODE": "1",
           PARENT_PID_ENV: str(os.getpid())}
    try:
        child = subprocess.Popen([sys.executable, "-m", "evalguard.sandbox", str(write)], stdin=subprocess.PIPE,
                                 stdout=log, stderr=log, cwd=scratch, env=env, pass_fds=(write,),
                                 start_new_session=True)
    finally:
        os.close(write)
    try:
        child.stdin.write(json.dumps(request).encode())
        child.stdin.close()
    except BrokenPipeError:
        pass   # it died at once: its exit status says why
    child.returncode = 0   # reaped by _reap (os.waitpid), not by Popen
    return child.pid, read


def _reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _tail(log, size: int = 2000) -> str:
    log.seek(0)
    return log.read()[-size:].decode(errors="replace")


def _forked_child(request: dict, write: int, log_fd: int) -> None:
    code = 1
    try:
        os.setsid()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        # fresh stream objects: a lock another thread held at the fork stays held in this copy
        sys.stdout = sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - lives until os._exit
        close_inherited_fds(keep=write)
        send(write, _call(request))
        code = 0
    finally:
        os._exit(code)  # no interpreter teardown: finalisers of hostile objects must not run


# -- the shared parts: limits, protocol, kill, cause of death --------------------------------

_ENTERED: Limits | None = None


def in_isolated_child() -> bool:
    """Whether this process limited and confined itself with ``enter_child`` (a worker, a trial)."""
    return _ENTERED is not None


def entered_limits() -> Limits | None:
    """The limits this process entered with (``enter_child``), or None in the audit's own process."""
    return _ENTERED


def _address_space() -> int:
    """This process's virtual size in bytes (what RLIMIT_AS counts)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


#: Least room a child needs above its size at the start to do anything at all.
MIN_HEADROOM = 64 << 20


def memory_cap(extra: int) -> tuple[int, str]:
    """The address-space cap for ``extra`` bytes on top of this process's size, within the hard
    limit; and a note when the hard limit cut it (empty otherwise)."""
    import resource

    current = _address_space()
    wanted = current + extra
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and wanted > hard:
        return hard, f"capped at the address-space hard limit ({size_text(hard)})"
    return wanted, ""


def enter_child(limits: Limits, scratch: str | None, writable: tuple[str, ...] = ()) -> list[str]:
    """Limit and confine this (child) process: address space relative to its size now, CPU
    time, no core dumps, writes only under ``scratch`` and ``writable`` (Landlock, where the
    kernel has it). Never asks for more than the hard limits allow. Returns the limits that
    could not be set, each with why (raises ``SandboxError("limits", ...)`` when no room is left)."""
    import resource

    global _ENTERED
    _ENTERED = limits
    notes = []
    if limits.memory_bytes:
        cap, note = memory_cap(limits.memory_bytes)
        if cap < _address_space() + MIN_HEADROOM:
            raise SandboxError("limits", f"the address-space limit ({size_text(cap)}) leaves no room above the "
                                         f"process's own size ({size_text(_address_space())})")
        try:
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        except (ValueError, OSError) as exc:
            notes.append(f"address-space limit not set: {exc}")
        if note:
            notes.append(note)
    if limits.cpu_seconds:
        _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        cpu = limits.cpu_seconds if hard == resource.RLIM_INFINITY else min(limits.cpu_seconds, hard)
        try:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, hard))
        except (ValueError, OSError) as exc:
            notes.append(f"CPU-time limit not set: {exc}")
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        pass
    if scratch is not None:
        os.environ.update(TMPDIR=scratch, HOME=scratch)
        tempfile.tempdir = scratch
        if not confine_writes(scratch, *writable):
            notes.append("file-system writes not confined: " + landlock_status())
    return notes


def send(fd: int, message: dict) -> None:
    """One JSON line to the parent (the whole protocol: no pickles cross from a child)."""
    data = (json.dumps(message, default=str) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def read_messages(fd: int, deadline, on_message) -> bool:
    """Read JSON lines from a child until it closes ``fd`` (then close it); False when the
    deadline passed first. ``deadline``: a ``time.monotonic()`` value, None, or a callable
    giving one (it may move, e.g. once a worker is ready)."""
    buffer = b""
    try:
        while True:
            at = deadline() if callable(deadline) else deadline
            remaining = None if at is None else at - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return True
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    try:
                        on_message(json.loads(line))
                    except ValueError:
                        pass   # a torn line from a dying child; the exit status says what happened
    finally:
        os.close(fd)


def close_inherited_fds(keep: int) -> None:
    """In a forked child: close every descriptor inherited from the parent but stdio and ``keep``
    (the result pipe), so the child cannot reach the parent's files and sockets."""
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)


_PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int | None) -> None:
    """SIGKILL this process when its parent dies (Linux ``PR_SET_PDEATHSIG``); a worker left
    behind by a killed evalguard must not keep running a program. ``expected_parent``: the pid
    the parent had before it started us; when the parent is already gone (we were re-parented
    before the request took effect), exit now."""
    if platform.system() == "Linux":
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if expected_parent and os.getppid() != expected_parent:
        os._exit(1)


#: The environment variable through which a worker learns its parent's pid (``die_with_parent``).
PARENT_PID_ENV = "EVALGUARD_PARENT_PID"


def expected_parent() -> int | None:
    try:
        return int(os.environ[PARENT_PID_ENV])
    except (KeyError, ValueError):
        return None


def kill_group(pid: int) -> None:
    """SIGKILL the child's session (it may have started processes), or the child alone."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


#: What an allocation failure under RLIMIT_AS looks like from Python, torch and C++.
_ALLOCATION_FAILURE = re.compile(r"MemoryError|can't allocate memory|bad_alloc|out of memory|Cannot allocate memory"
                                 r"|std::length_error", re.IGNORECASE)

_SIGNALS = {"SIGSEGV": "a segmentation fault", "SIGKILL": "killed from outside (or by the kernel's memory killer)",
            "SIGXCPU": "ran past its CPU-time limit", "SIGABRT": "aborted", "SIGBUS": "a bus error"}


def memory_failure(text: str) -> bool:
    return bool(_ALLOCATION_FAILURE.search(text or ""))


def signal_text(number: int) -> str:
    """``was killed by SIGSEGV (signal 11): a segmentation fault``."""
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"was killed by signal {number}"
    meaning = _SIGNALS.get(name)
    return f"was killed by {name} (signal {number})" + (f": {meaning}" if meaning else "")


def size_text(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit in ("B", "KiB") else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} TiB"   # pragma: no cover


@dataclass
class Ending:
    """How an isolated child ended: its messages, exit status and log tail, read as one cause."""

    limits: Limits = field(default_factory=Limits)
    returncode: int | None = None
    timed_out: bool = False
    message: dict | None = None
    log_tail: str = ""

    def receive(self, message: dict) -> None:
        self.message = message

    def reason(self) -> str:
        """timeout | memory | signal | limits | setup | error | exit | ok."""
        message = self.message or {}
        if self.timed_out:
            return "timeout"
        if message.get("ok") and self.returncode == 0:
            return "ok"
        said = f"{message.get('type', '')}: {message.get('message', '')}" if message else ""
        if self.limits.memory_bytes and (memory_failure(said) or (self.returncode != 0 and
                                                                  memory_failure(self.log_tail))):
            return "memory"
        if message.get("type") == "SandboxError:limits":
            return "limits"
        if message.get("setup"):
            return "setup"
        if self.returncode is not None and self.returncode < 0:
            return "signal"
        if message and not message.get("ok"):
            return "error"
        return "exit"

    def cause(self) -> str:
        reason, message = self.reason(), self.message or {}
        if reason == "timeout":
            return f"did not finish within {self.limits.wall_seconds:g} s (killed)"
        if reason == "memory":
            return f"exceeded {self.limits.memory_flag} ({size_text(self.limits.memory_bytes)})"
        if reason == "signal":
            return signal_text(-self.returncode)
        if reason in ("error", "limits", "setup"):
            return f"{message.get('type', '').replace('SandboxError:limits', 'cannot set its limits')}: " \
                   f"{message.get('message')}"
        tail = (self.log_tail.strip().splitlines() or [""])[-1][:200]
        return f"exited with code {self.returncode} without a result{': ' + tail if tail else ''}"

    def value(self):
        """The child's result, or ``SandboxError`` with the cause."""
        reason = self.reason()
        if reason == "ok":
            return self.message.get("value")
        raise SandboxError(reason, self.cause())


# -- the child ------------------------------------------------------------------------------


def landlock_abi() -> int:
    """Landlock ABI version of the running kernel (0: not available)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(_SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_VERSION))
    return max(int(version), 0)


def landlock_status() -> str:
    abi = landlock_abi()
    if abi <= 0:
        return "unavailable (kernel without Landlock): writes are not confined, only rlimits and timeouts apply"
    return f"Landlock ABI {abi}: writes confined to a temporary folder" + (", TCP blocked" if abi >= 4 else "")


def confine_writes(folder: str, *writable: str) -> bool:
    """Forbid writes (and TCP on ABI >= 4, device ioctls on ABI >= 5) outside ``folder`` and
    ``writable`` for this process; False when unsupported. ``/dev/null`` stays writable; a file in
    ``writable`` (a GPU's device node) gets writes and ioctls."""
    abi = landlock_abi()
    if abi <= 0:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    write = _WRITE_ACCESS_BY_ABI[max(k for k in _WRITE_ACCESS_BY_ABI if k <= abi)]
    attr = (ctypes.c_uint64 * 2)(write, _NET_TCP if abi >= 4 else 0)
    size = 16 if abi >= 4 else 8
    ruleset = libc.syscall(_SYS_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return False
    try:
        file_access = _WRITE_FILE | (_TRUNCATE if abi >= 3 else 0) | (_IOCTL_DEV if abi >= 5 else 0)
        rules = [(path, write if os.path.isdir(path) else file_access)
                 for path in (folder, *writable, os.devnull) if os.path.exists(path)]
        for path, access in rules:
            if not _add_rule(libc, ruleset, path, access):
                return False
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return False
        return libc.syscall(_SYS_RESTRICT, ctypes.c_int(ruleset), ctypes.c_uint32(0)) == 0
    finally:
        os.close(ruleset)


def _add_rule(libc, ruleset: int, path: str, access: int) -> bool:
    parent = os.open(path, os.O_PATH)
    try:
        beneath = (ctypes.c_uint8 * 12).from_buffer_copy(access.to_bytes(8, "little") + parent.to_bytes(4, "little"))
        return libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                            ctypes.byref(beneath), ctypes.c_uint32(0)) >= 0
    finally:
        os.close(parent)


def _enter_trial(request: dict):
    """The trial child's own set-up: limits, confinement, the entry function (evalguard's code)."""
    import importlib

    enter_child(Limits(**request["limits"]), request["scratch"])
    os.chdir(request["scratch"])
    module_name, _, func_name = request["entry"].partition(":")
    return getattr(importlib.import_module(module_name), func_name)


def _failure(exc: BaseException, **extra) -> dict:
    kind = type(exc).__name__ + (f":{exc.reason}" if isinstance(exc, SandboxError) else "")
    return {"ok": False, "type": kind, "message": (str(exc).splitlines() or [""])[0][:300], **extra}


def _call(request: dict) -> dict:
    """Limit and confine this process, then call the entry: the message for the parent, as a dict.

    A failure of the set-up itself is marked ``setup`` (evalguard's bug, EG900), except the limits
    the system does not allow, which say so (``SandboxError:limits``)."""
    try:
        entry = _enter_trial(request)
    except SandboxError as exc:
        return _failure(exc)
    except BaseException as exc:  # noqa: BLE001 - goes back to the parent as text
        return _failure(exc, setup=True)
    try:
        return {"ok": True, "value": entry(*request["args"])}
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as text
        return _failure(exc)


def _child_main() -> None:
    """The spawned child: ``python -m evalguard.sandbox FD``, the request as JSON on stdin."""
    die_with_parent(expected_parent())
    write = int(sys.argv[1])
    request = json.loads(sys.stdin.read())
    sys.path[:] = request["sys_path"]  # resolve modules exactly as the parent does
    send(write, _call(request))
    os._exit(0)  # no interpreter teardown: finalisers of hostile objects must not run


if __name__ == "__main__":
    _child_main()
