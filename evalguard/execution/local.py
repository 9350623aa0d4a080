"""Run model targets in worker processes on this machine, ``jobs`` at a time.

Each target gets a fresh ``python -m evalguard.execution.worker``: a segfault in a native
library, an ``os.abort()``, an out-of-memory kill or a hang ends that worker only, and the
target is reported with ``status: error`` and the cause (signal or exit code, peak memory,
the last step the worker reported). Every other target is still audited and reported.
"""
from __future__ import annotations

import json
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from evalguard.errors import UsageError
from evalguard.execution import ExecutionOptions, Target, threads_per_worker
from evalguard.findings import SKIPPED, Finding, RuleCoverage, Severity, TargetResult
from evalguard.subject import AuditOptions

#: How much of a failed worker's own output (a faulthandler traceback, a C++ abort message)
#: is replayed on stderr.
_LOG_TAIL = 4000


@dataclass
class WorkerExit:
    """How a worker ended, for the target's error message."""

    returncode: int | None = None        # negative: killed by that signal
    timed_out: bool = False
    last_step: str = ""
    peak_rss_kib: int | None = None
    message: dict | None = None          # the final JSON message, when one came

    def cause(self, execution: ExecutionOptions) -> str:
        if self.timed_out:
            what = f"timed out after {execution.timeout:g}s (--timeout); the worker was killed"
        elif self.returncode is not None and self.returncode < 0:
            what = f"the worker was killed by {_signal_name(-self.returncode)}"
        elif self.returncode is None:
            what = "the fork server stopped before it could report how the worker ended"
        elif self.message and "internal_error" in self.message:
            what = f"internal error in evalguard's worker: {self.message['internal_error']}"
        else:
            what = f"the worker exited with code {self.returncode} without a result"
        notes = []
        if self.last_step:
            notes.append(f"last step: {self.last_step}")
        if self.peak_rss_kib:
            notes.append(f"peak RSS {_size(self.peak_rss_kib * 1024)}")
        if execution.memory_limit and not self.timed_out:
            notes.append(f"--memory-limit {_size(execution.memory_limit)}")
        return what + (f" ({'; '.join(notes)})" if notes else "")


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} (signal {number})"
    except ValueError:
        return f"signal {number}"


def _size(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit in ("B", "KiB") else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} TiB"   # pragma: no cover


#: The worker's entry: this very evalguard (not whichever copy the interpreter finds first);
#: the worker then takes the parent's ``sys.path`` for the audited code's imports.
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from evalguard.execution.worker import main; sys.exit(main(sys.argv[2:]))")

#: Fork workers from a server that imported torch & co once (Linux), instead of starting a
#: fresh interpreter per target; tests turn it off to cover the other path.
USE_FORK_SERVER = True


def _boot() -> list[str]:
    return [sys.executable, "-c", _BOOT, str(Path(__file__).resolve().parents[2])]


def _worker_env() -> dict:
    env = dict(os.environ)
    env.setdefault("PYTHONFAULTHANDLER", "1")   # a crash leaves its Python traceback in the log
    return env


class _Deadline:
    """``--timeout`` counts from the moment the worker is ready (interpreter and torch imported),
    so a busy machine's slow start-up is not charged to the target; start-up itself gets
    ``STARTUP_GRACE`` seconds on top."""

    STARTUP_GRACE = 120.0

    def __init__(self, timeout: float | None):
        self.timeout = timeout
        self.at = None if timeout is None else time.monotonic() + timeout + self.STARTUP_GRACE

    def ready(self) -> None:
        if self.timeout is not None:
            self.at = time.monotonic() + self.timeout


def _read_messages(fd: int, deadline: _Deadline, on_message) -> bool:
    """Read JSON lines from the worker until it closes the channel; False when the deadline passed."""
    buffer = b""
    while True:
        remaining = None if deadline.at is None else deadline.at - time.monotonic()
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
                    pass   # a torn line from a dying worker; the exit status says what happened


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)   # the worker leads its own group: its children go too
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class _SpawnedWorker:
    """A fresh interpreter for one target; we are its parent and reap it ourselves."""

    def __init__(self, job: bytes, channel_fd: int, log):
        try:
            self.proc = subprocess.Popen(
                [*_boot(), str(channel_fd)], stdin=subprocess.PIPE, stdout=log, stderr=log,
                pass_fds=(channel_fd,), env=_worker_env(), start_new_session=True)
        except OSError as exc:
            raise UsageError(f"cannot start a worker process: {exc.strerror}") from None
        self.pid = self.proc.pid
        try:
            self.proc.stdin.write(job)
            self.proc.stdin.close()
        except BrokenPipeError:
            pass   # the worker died at once; its exit status says why

    def kill(self) -> None:
        _kill_group(self.pid)

    def reap(self) -> tuple[int | None, int | None]:
        """Exit code (negative: the signal) and peak RSS in KiB, from the kernel's accounting."""
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(self.pid, 0)
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            peak = usage.ru_maxrss // 1024 if sys.platform == "darwin" else usage.ru_maxrss
            return self.proc.returncode, peak
        return self.proc.wait(), None   # pragma: no cover - Windows has no wait4


class _ForkedWorker:
    """A child of the fork server (``evalguard.execution.zygote``), which reaps it for us."""

    def __init__(self, server, job: bytes, channel_fd: int, log):
        from evalguard.execution.zygote import ForkServerDied

        try:
            self.pid, self._exit = server.start(job, channel_fd, log.fileno())
        except ForkServerDied as exc:
            raise _NoWorker(str(exc)) from None

    def kill(self) -> None:
        _kill_group(self.pid)

    def reap(self) -> tuple[int | None, int | None]:
        message = self._exit.get()
        if message is None:            # the server went away before it could tell
            return None, None
        return message["code"], message["maxrss"]


class _NoWorker(Exception):
    """The fork server could not start a worker (it has stopped)."""


class LocalExecutor:
    """One worker process per target, at most ``execution.jobs`` at once."""

    def __init__(self, options: AuditOptions, overrides: Mapping[str, Severity] | None,
                 execution: ExecutionOptions, progress, log_stream=None):
        self.options = options
        self.overrides = dict(overrides or {})
        self.execution = execution
        self.progress = progress
        self.log_stream = log_stream if log_stream is not None else sys.stderr
        self.threads = threads_per_worker(execution.jobs)
        self._running: set = set()        # worker handles, killed if the run is cancelled
        self._cancelled = False
        self._lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._server = None

    def run(self, targets: list[Target]) -> dict[Target, tuple[TargetResult, list[Finding]]]:
        results: dict[Target, tuple[TargetResult, list[Finding]]] = {}
        if not targets:
            return results
        self._server = self._start_server(len(targets))
        pool = ThreadPoolExecutor(max_workers=self.execution.jobs)
        futures = [pool.submit(self.audit, target) for target in targets]
        try:
            for target, future in zip(targets, futures):
                results[target] = future.result()
        except BaseException:   # Ctrl-C, or a usage error from a worker: no worker outlives the run
            self._cancelled = True
            for future in futures:
                future.cancel()
            with self._lock:
                for worker in list(self._running):
                    worker.kill()
            raise
        finally:
            pool.shutdown(wait=True)
            if self._server is not None:
                self._server.close()
        return results

    def _start_server(self, count: int):
        """A fork server pays off from two targets on; without one, each worker is spawned."""
        from evalguard.execution import zygote

        if count < 2 or not USE_FORK_SERVER or not zygote.available():
            return None
        try:
            return zygote.ForkServer(_boot(), _worker_env())
        except (OSError, zygote.ForkServerDied):
            return None

    def _launch(self, job: bytes, channel_fd: int, log):
        if self._server is not None:
            try:
                return _ForkedWorker(self._server, job, channel_fd, log)
            except _NoWorker:
                pass   # the server stopped (killed?): the rest of the run spawns its workers
        return _SpawnedWorker(job, channel_fd, log)

    # ------------------------------------------------------------ one target
    def _job(self, target: Target) -> bytes:
        return pickle.dumps({"target": target, "options": self.options, "overrides": self.overrides,
                             "sys_path": list(sys.path), "threads": self.threads,
                             "memory_limit": self.execution.memory_limit})

    def audit(self, target: Target) -> tuple[TargetResult, list[Finding]]:
        if self._cancelled:
            raise RuntimeError("cancelled")
        self.progress.begin(target.display)
        exit_info = WorkerExit(last_step="starting the worker")
        read_fd, write_fd = os.pipe()
        with tempfile.TemporaryFile() as log:
            try:
                worker = self._launch(self._job(target), write_fd, log)
            except BaseException:
                os.close(read_fd)
                raise
            finally:
                os.close(write_fd)
            with self._lock:
                self._running.add(worker)
                if self._cancelled:
                    worker.kill()

            deadline = _Deadline(self.execution.timeout)

            def on_message(message: dict) -> None:
                if "ready" in message:
                    deadline.ready()
                    exit_info.last_step = "worker ready"
                elif "step" in message:
                    exit_info.last_step = message["step"]
                    self.progress.step(message["step"], target.display)
                else:
                    exit_info.message = message

            try:
                finished = _read_messages(read_fd, deadline, on_message)
                if not finished:
                    exit_info.timed_out = True
                    worker.kill()
            finally:
                os.close(read_fd)
                exit_info.returncode, exit_info.peak_rss_kib = worker.reap()
                with self._lock:
                    self._running.discard(worker)
            self._replay_log(log, failed=exit_info.timed_out or exit_info.returncode != 0)
        outcome = self._outcome(target, exit_info)
        self.progress.finish(target.display, peak_rss_kib=exit_info.peak_rss_kib, status=outcome[0].status)
        return outcome

    def _outcome(self, target: Target, exit_info: WorkerExit) -> tuple[TargetResult, list[Finding]]:
        from evalguard.reporters.json_report import finding_from_dict, target_from_dict

        message = exit_info.message or {}
        if "usage_error" in message:
            raise UsageError(message["usage_error"])
        if "result" in message and not exit_info.timed_out:
            result = message["result"]
            return (target_from_dict(result["target"]),
                    [finding_from_dict(f) for f in result["findings"]])
        detail = f"{target.display}: {exit_info.cause(self.execution)}"
        not_checked = {rule: RuleCoverage(SKIPPED, detail) for rule in sorted(self.options.selected)}
        return TargetResult(target.display, "unknown", "error", detail, not_checked), []

    def _replay_log(self, log, failed: bool) -> None:
        """What the worker printed goes to our stderr (never stdout: a report may be there);
        a failed worker's output is cut to its tail, where the fatal message is."""
        log.seek(0)
        data = log.read()
        if not data:
            return
        if failed and len(data) > _LOG_TAIL:
            data = b"...\n" + data[-_LOG_TAIL:]
        with self._log_lock:
            self.progress.interject(data.decode("utf-8", "replace"), self.log_stream)


def run_isolated(targets: list[Target], options: AuditOptions, overrides, execution: ExecutionOptions,
                 progress) -> dict[Target, tuple[TargetResult, list[Finding]]]:
    return LocalExecutor(options, overrides, execution, progress).run(targets)
