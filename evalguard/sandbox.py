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

Requests and results travel as JSON, never pickles: the child handles hostile data and the
parent must not unpickle anything it says. ``landlock_status()`` reports availability.
"""
from __future__ import annotations

import ctypes
import json
import os
import platform
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

#: Defaults; ``EVALGUARD_SANDBOX_TIMEOUT`` (seconds) overrides the wall-clock limit.
WALL_SECONDS = 120.0
CPU_SECONDS = 300
MEMORY_BYTES = 8 << 30
_RESULT = "evalguard-sandbox-result:"

# Landlock (linux/landlock.h); the syscall numbers are shared by x86_64 and aarch64.
_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446
_PR_SET_NO_NEW_PRIVS = 38
_CREATE_VERSION = 1
_RULE_PATH_BENEATH = 1
_READ_ACCESS = 0x1 | 0x4 | 0x8            # execute, read file, read dir: left unrestricted
_WRITE_ACCESS_BY_ABI = {1: 0x1FF2, 2: 0x3FF2, 3: 0x7FF2, 5: 0xFFF2}   # everything else
_NET_TCP = 0x1 | 0x2                      # bind, connect (ABI 4+)


class SandboxError(Exception):
    """The isolated step did not return: ``reason`` is timeout | signal | exit | error | memory, or
    setup when the child's own set-up (limits, importing the entry) failed: evalguard's bug."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = WALL_SECONDS
    cpu_seconds: int = CPU_SECONDS
    memory_bytes: int = MEMORY_BYTES


def run_isolated(entry: str, *args, limits: Limits | None = None):
    """Call ``entry`` ("module:function") with JSON-able ``args`` in a limited child; return its JSON result."""
    limits = limits or Limits()
    wall = float(os.environ.get("EVALGUARD_SANDBOX_TIMEOUT", limits.wall_seconds))
    with tempfile.TemporaryDirectory(prefix="evalguard-sandbox-") as scratch:
        request = {"entry": entry, "args": list(args), "scratch": scratch, "sys_path": sys.path,
                   "cpu": limits.cpu_seconds, "memory": limits.memory_bytes}
        if forks():
            return _forked(request, wall)
        env = {**os.environ, "TMPDIR": scratch, "HOME": scratch, "PYTHONDONTWRITEBYTECODE": "1"}
        child = subprocess.Popen([sys.executable, "-m", "evalguard.sandbox"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=scratch, env=env,
                                 start_new_session=True)
        try:
            out, err = child.communicate(json.dumps(request).encode(), timeout=wall)
        except subprocess.TimeoutExpired:
            _kill(child)
            raise SandboxError("timeout", f"did not finish within {wall:g} s (killed)") from None
    return _result(child.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def forks() -> bool:
    """Whether the child is a fork of this process (Linux, unless EVALGUARD_SANDBOX_SPAWN=1)."""
    return platform.system() == "Linux" and hasattr(os, "fork") and os.environ.get("EVALGUARD_SANDBOX_SPAWN") != "1"


def _forked(request: dict, wall: float):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: never returns
        os.close(read)
        _forked_child(request, write)
    os.close(write)
    chunks, deadline = [], time.monotonic() + wall
    try:
        while True:
            remaining = deadline - time.monotonic()
            ready = select.select([read], [], [], remaining)[0] if remaining > 0 else []
            if not ready:
                _kill_group(pid)
                os.waitpid(pid, 0)
                raise SandboxError("timeout", f"did not finish within {wall:g} s (killed)")
            data = os.read(read, 1 << 16)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(read)
    _, status = os.waitpid(pid, 0)
    return _result(os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace"), "")


def _forked_child(request: dict, write: int) -> None:
    code = 1
    try:
        os.setsid()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        # fresh stream objects: a lock another thread held at the fork stays held in this copy
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives until os._exit
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd != write:
                try:
                    os.close(fd)
                except OSError:
                    pass
        os.chdir(request["scratch"])
        os.environ.update(TMPDIR=request["scratch"], HOME=request["scratch"])
        request = {**request, "memory": request["memory"] + _address_space()}
        message = _call(request)
        os.write(write, ("\n" + _RESULT + json.dumps(message, default=str) + "\n").encode())
        code = 0
    finally:
        os._exit(code)  # no interpreter teardown: finalisers of hostile objects must not run


def _address_space() -> int:
    """This process's virtual size in bytes (what RLIMIT_AS counts)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _kill_group(pid: int) -> None:
    """SIGKILL the child's session (it may have started processes), or the child alone."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _kill(child: subprocess.Popen) -> None:
    _kill_group(child.pid)
    child.communicate()


def _result(code: int, out: str, err: str):
    lines = [line for line in out.splitlines() if line.startswith(_RESULT)]
    if code == 0 and lines:
        message = json.loads(lines[-1][len(_RESULT):])
        if message.get("ok"):
            return message.get("value")
        reason = "setup" if message.get("setup") else "memory" if message.get("type") == "MemoryError" else "error"
        raise SandboxError(reason, f"{message.get('type')}: {message.get('message')}")
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        what = {"SIGSEGV": "crashed (segmentation fault)", "SIGKILL": "was killed (memory or CPU limit)",
                "SIGXCPU": "ran past its CPU-time limit", "SIGABRT": "aborted",
                "SIGBUS": "crashed (bus error)"}.get(name, f"died from {name}")
        raise SandboxError("signal", what)
    tail = (err.strip().splitlines() or [""])[-1][:200]
    raise SandboxError("exit", f"exited with code {code} without a result{': ' + tail if tail else ''}")


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


def confine_writes(folder: str) -> bool:
    """Forbid writes (and TCP on ABI >= 4) outside ``folder`` for this process; False when unsupported."""
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
        parent = os.open(folder, os.O_PATH | os.O_DIRECTORY)
        beneath = (ctypes.c_uint8 * 12).from_buffer_copy(write.to_bytes(8, "little") + parent.to_bytes(4, "little"))
        added = libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                             ctypes.byref(beneath), ctypes.c_uint32(0))
        os.close(parent)
        if added < 0 or libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return False
        return libc.syscall(_SYS_RESTRICT, ctypes.c_int(ruleset), ctypes.c_uint32(0)) == 0
    finally:
        os.close(ruleset)


def _limit_self(request: dict) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (request["memory"], request["memory"]))
    resource.setrlimit(resource.RLIMIT_CPU, (request["cpu"], request["cpu"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    confine_writes(request["scratch"])


def _call(request: dict) -> dict:
    """Limit this process, then call the entry: the message for the parent, as a dict."""
    import importlib

    try:   # evalguard's own set-up: a failure here is its bug ("setup"), not the file's
        _limit_self(request)
        module_name, _, func_name = request["entry"].partition(":")
        entry = getattr(importlib.import_module(module_name), func_name)
    except BaseException as exc:  # noqa: BLE001 - goes back to the parent as text
        return {"ok": False, "setup": True, "type": type(exc).__name__,
                "message": (str(exc).splitlines() or [""])[0][:300]}
    try:
        value = entry(*request["args"])
        return {"ok": True, "value": value}
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as text
        return {"ok": False, "type": type(exc).__name__, "message": (str(exc).splitlines() or [""])[0][:300]}


def _child_main() -> None:
    request = json.loads(sys.stdin.read())
    sys.path[:] = request["sys_path"]  # resolve modules exactly as the parent does
    message = _call(request)
    sys.stdout.write("\n" + _RESULT + json.dumps(message, default=str) + "\n")
    sys.stdout.flush()
    os._exit(0)  # no interpreter teardown: finalisers of hostile objects must not run


if __name__ == "__main__":
    _child_main()
