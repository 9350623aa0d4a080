"""A fork server: one process imports torch, ONNX, ONNX Runtime and the checks once, then
forks a fresh worker for each target (Linux).

Importing those libraries costs several seconds per process; forked from a process that has
them loaded, each target still gets a process of its own (a crash, a kill or a timeout ends
that child only) without paying for the imports again. Nothing runs a torch operation in the
server before it forks, so no thread pool is copied half-alive.

Protocol over one ``AF_UNIX``/``SOCK_SEQPACKET`` socket pair (message boundaries kept):
the parent sends ``{"id", "job"}`` pickled (its own job, as on the spawned worker's stdin)
with two file descriptors, the worker's result channel and its log file; the server answers
``{"id", "pid"}`` once it forked, and ``{"exit": pid, "code", "maxrss"}`` when it reaped the
child (the parent cannot: the child is the server's).
"""
from __future__ import annotations

import itertools
import os
import pickle
import queue
import select
import signal
import socket
import subprocess
import sys
import threading

from evalguard.sandbox import die_with_parent, expected_parent

#: Imported before forking when installed; a failure only means that child imports it itself.
PRELOAD = ("torch", "torch.fx", "torch.export", "torch._dynamo", "torch.distributed", "onnx", "onnxruntime",
           "onnxscript", "torch.onnx", "transformers", "transformers.modeling_utils", "safetensors")
_MESSAGE = 1 << 20


def available() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds") and hasattr(os, "fork")


# ---------------------------------------------------------------------------- the server
def _preload() -> None:
    import importlib

    from evalguard.checks import CHECKS

    modules = [*PRELOAD, "evalguard.engine", "evalguard.loading.formats", "evalguard.reporters.json_report",
               *(spec.entry.partition(":")[0] for spec in CHECKS)]
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - not installed or broken: the child will say so
            continue


def _child(request: dict, fds: list[int], sock: socket.socket) -> None:
    """In the forked child: become a worker of our own process group and never return."""
    code = 1
    try:
        os.setsid()
        sock.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        channel_fd, log_fd = fds
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        from evalguard.execution.worker import serve_job

        serve_job(pickle.loads(request["job"]), channel_fd)   # our parent's own job bytes
        code = 0
    except BaseException:   # noqa: BLE001 - report on the log, exit non-zero: the parent says why
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(sock_fd: int) -> None:
    """The server loop: fork on each request, report each child's end; stop when the parent goes."""
    die_with_parent(expected_parent())
    sock = socket.socket(fileno=sock_fd)
    _preload()
    sock.sendmsg([pickle.dumps({"ready": True})])
    children: set[int] = set()
    while True:
        ready, _, _ = select.select([sock], [], [], 0.05 if children else None)
        if ready:
            data, fds, _, _ = socket.recv_fds(sock, _MESSAGE, 2)
            if not data:
                break
            request = pickle.loads(data)   # from our parent process only (a private socket pair)
            server = os.getpid()
            pid = os.fork()
            if pid == 0:
                die_with_parent(server)
                _child(request, fds, sock)
            for fd in fds:
                os.close(fd)
            children.add(pid)
            sock.sendmsg([pickle.dumps({"id": request["id"], "pid": pid})])
        while children:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
            if pid == 0:
                break
            children.discard(pid)
            sock.sendmsg([pickle.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status),
                                        "maxrss": usage.ru_maxrss})])
    for pid in children:   # the parent went away: no orphan audits
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


# ---------------------------------------------------------------------------- the client
class ForkServerDied(Exception):
    pass


class ForkServer:
    """The parent's side: ``start`` a worker for a job, then ``wait`` for its exit."""

    def __init__(self, boot: list[str], env: dict):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen([*boot, "zygote", str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        finally:
            theirs.close()
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._by_id: dict[int, queue.Queue] = {}
        self._by_pid: dict[int, queue.Queue] = {}
        self._dead = False
        first = self._receive()
        if not first or not first.get("ready"):
            self.close()
            raise ForkServerDied("the fork server did not start")
        self._reader = threading.Thread(target=self._read, name="evalguard-fork-server", daemon=True)
        self._reader.start()

    def _receive(self) -> dict | None:
        data = self.sock.recv(_MESSAGE)
        return pickle.loads(data) if data else None   # from the server we started

    def _read(self) -> None:
        while True:
            try:
                message = self._receive()
            except OSError:
                message = None
            with self._lock:
                if message is None:
                    self._dead = True
                    for waiting in [*self._by_id.values(), *self._by_pid.values()]:
                        waiting.put(None)
                    return
                if "pid" in message:
                    waiting = self._by_id.pop(message["id"])
                    self._by_pid[message["pid"]] = waiting
                    waiting.put(message)
                elif "exit" in message:
                    self._by_pid.pop(message["exit"]).put(message)

    def start(self, job: bytes, channel_fd: int, log_fd: int) -> tuple[int, queue.Queue]:
        """Fork a worker for ``job``; its pid and the queue its exit message will arrive on."""
        waiting: queue.Queue = queue.Queue()
        with self._lock:
            if self._dead:
                raise ForkServerDied("the fork server has stopped")
            request_id = next(self._ids)
            self._by_id[request_id] = waiting
            socket.send_fds(self.sock, [pickle.dumps({"id": request_id, "job": job})], [channel_fd, log_fd])
        reply = waiting.get()
        if reply is None:
            raise ForkServerDied("the fork server has stopped")
        return reply["pid"], waiting

    def close(self) -> None:
        """Tell the server to stop (it kills any child still running), then wait for it."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()
