"""Run model targets in worker processes on this machine, ``jobs`` at a time.

Each target gets a fresh ``python -m evalguard.execution.worker``: a segfault in a native
library, an ``os.abort()``, an out-of-memory kill or a hang ends that worker only, and the
target is reported with ``status: error`` and the cause (signal or exit code, peak memory,
the last step the worker reported). Every other target is still audited and reported.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import pickle
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
from evalguard.execution import (
    DEFAULT_TIMEOUT,
    DEFAULT_TIMEOUT_BASE,
    DEFAULT_TIMEOUT_PER_100MIB,
    ExecutionOptions,
    Target,
    target_size,
    threads_per_worker,
)
from evalguard.findings import SKIPPED, Finding, RuleCoverage, Severity, TargetResult
from evalguard.sandbox import kill_group, read_messages
from evalguard.subject import AuditOptions

#: How much of a failed worker's own output (a faulthandler traceback, a C++ abort message)
#: is replayed on stderr.
_LOG_TAIL = 4000


@dataclass
class WorkerExit:
    """How a worker ended, for the target's error message (read with ``evalguard.sandbox``'s rules)."""

    returncode: int | None = None        # negative: killed by that signal
    timed_out: bool = False
    last_step: str = ""
    peak_rss_kib: int | None = None
    message: dict | None = None          # the final JSON message, when one came
    log_tail: str = ""
    device: str = "cpu"
    timeout: float | None = None         # the wall-clock limit this worker ran under

    def memory_hit(self, execution: ExecutionOptions) -> bool:
        from evalguard.sandbox import memory_failure

        said = json.dumps(self.message) if self.message else ""
        return bool(execution.worker_memory(self.device)[0]) and not self.timed_out and (
            memory_failure(said) or (self.returncode != 0 and memory_failure(self.log_tail)))

    def cause(self, execution: ExecutionOptions) -> str:
        from evalguard.sandbox import signal_text, size_text

        if self.timed_out:
            flag_note = ("--timeout" if execution.timeout is not None else
                         f"the default limit: {DEFAULT_TIMEOUT_BASE:g}s plus {DEFAULT_TIMEOUT_PER_100MIB:g}s per "
                         f"100 MiB of model files, at most {DEFAULT_TIMEOUT:g}s; --timeout changes it")
            limit = self.timeout if self.timeout is not None else execution.worker_timeout()
            what = f"timed out after {limit:.0f}s ({flag_note}); the worker was killed"
        elif self.message and "limits_error" in self.message:
            what = f"the worker could not set its limits: {self.message['limits_error']}"
        elif self.memory_hit(execution):
            what = f"{memory_exceeded(execution, self.device)}; the worker's allocation failed"
        elif self.returncode is not None and self.returncode < 0:
            what = f"the worker {signal_text(-self.returncode)}"
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
            notes.append(f"peak RSS {size_text(self.peak_rss_kib * 1024)}")
        if execution.memory_limit and not self.timed_out and "--memory-limit" not in what:
            notes.append(f"--memory-limit {size_text(execution.memory_limit)}")
        return what + (f" ({'; '.join(notes)})" if notes else "")


def memory_exceeded(execution: ExecutionOptions, device: str = "cpu") -> str:
    """``exceeded --memory-limit (2.0 GiB)``, or the hard address-space limit (``ulimit -v``)
    that this process was started under when that is the smaller one."""
    import resource

    from evalguard.sandbox import _address_space, size_text

    memory, flag = execution.worker_memory(device)
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY and (not memory or hard < _address_space() + memory):
        return f"exceeded the address-space hard limit this run was started under ({size_text(hard)}, ulimit -v)"
    return f"exceeded {flag} ({size_text(memory)})"


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
    from evalguard.sandbox import PARENT_PID_ENV

    env = dict(os.environ)
    env.setdefault("PYTHONFAULTHANDLER", "1")   # a crash leaves its Python traceback in the log
    env[PARENT_PID_ENV] = str(os.getpid())      # the worker dies with us (sandbox.die_with_parent)
    return env


class _Deadline:
    """The worker's wall-clock limit counts from the moment it is ready (interpreter and torch
    imported), so a busy machine's slow start-up is not charged to the target; start-up itself
    gets ``STARTUP_GRACE`` seconds on top."""

    STARTUP_GRACE = 120.0

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.at = time.monotonic() + timeout + self.STARTUP_GRACE

    def ready(self) -> None:
        self.at = time.monotonic() + self.timeout

    def __call__(self) -> float:
        return self.at


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
        kill_group(self.pid)

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
        kill_group(self.pid)

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
    def _job(self, target: Target, scratch: str, timeout: float) -> bytes:
        memory, flag = self.execution.worker_memory(self.options.device)
        keep = self.options.keep_onnx
        writable = [str(Path(keep).resolve().parent)] if keep else []
        if self.options.device == "cuda":   # the driver talks to its device nodes by ioctl
            writable += sorted(glob.glob("/dev/nvidia*"))
        return pickle.dumps({"target": target, "options": self.options, "overrides": self.overrides,
                             "sys_path": list(sys.path), "threads": self.threads,
                             "memory_limit": memory, "memory_flag": flag,
                             "cpu_seconds": self._cpu_seconds(timeout),
                             "scratch": scratch, "writable": writable})

    def _cpu_seconds(self, timeout: float) -> int:
        """RLIMIT_CPU of a worker: its wall-clock limit (plus start-up) on every thread it may use.
        A backstop that needs no parent: a worker that outlived evalguard still stops."""
        threads = self.threads or os.cpu_count() or 1
        return int((timeout + _Deadline.STARTUP_GRACE) * threads) + 1

    def audit(self, target: Target) -> tuple[TargetResult, list[Finding]]:
        if self._cancelled:
            raise RuntimeError("cancelled")
        self.progress.begin(target.display)
        timeout = self.execution.worker_timeout(target_size(target.path))
        exit_info = WorkerExit(last_step="starting the worker", device=self.options.device, timeout=timeout)
        read_fd, write_fd = os.pipe()
        with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory(prefix="evalguard-worker-") as scratch:
            try:
                worker = self._launch(self._job(target, scratch, timeout), write_fd, log)
            except BaseException:
                os.close(read_fd)
                raise
            finally:
                os.close(write_fd)
            with self._lock:
                self._running.add(worker)
                if self._cancelled:
                    worker.kill()

            deadline = _Deadline(timeout)

            def on_message(message: dict) -> None:
                if "ready" in message:
                    deadline.ready()
                    exit_info.last_step = "worker ready"
                    self._warn_unconfined(target, message.get("notes") or [])
                elif "step" in message:
                    exit_info.last_step = message["step"]
                    self.progress.step(message["step"], target.display)
                else:
                    exit_info.message = message

            try:
                finished = read_messages(read_fd, deadline, on_message)
                if not finished:
                    exit_info.timed_out = True
                    worker.kill()
            finally:
                exit_info.returncode, exit_info.peak_rss_kib = worker.reap()
                with self._lock:
                    self._running.discard(worker)
            exit_info.log_tail = self._replay_log(log, failed=exit_info.timed_out or exit_info.returncode != 0)
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
            found = target_from_dict(result["target"]), [finding_from_dict(f) for f in result["findings"]]
            return self._memory_named(found, exit_info)
        detail = f"{target.display}: {exit_info.cause(self.execution)}"
        not_checked = {rule: RuleCoverage(SKIPPED, detail) for rule in sorted(self.options.selected)}
        return TargetResult(target.display, "unknown", "error", detail, not_checked), []

    def _warn_unconfined(self, target: Target, notes: list[str]) -> None:
        """A limit or the write confinement that the worker could not set is said on stderr."""
        missing = [note for note in notes if not note.startswith("capped at")]
        if missing:
            with self._log_lock:
                self.progress.interject(f"warning: {target.display}: {'; '.join(missing)}\n", self.log_stream)

    def _memory_named(self, found, exit_info: WorkerExit):
        """A target that failed because an allocation hit the worker's address-space cap says so."""
        result, findings = found
        if result.status != "error" or not exit_info.memory_hit(self.execution):
            return found
        detail = f"{result.path}: {memory_exceeded(self.execution, self.options.device)}: {result.detail}"
        return dataclasses.replace(result, detail=detail), findings

    def _replay_log(self, log, failed: bool) -> None:
        """What the worker printed goes to our stderr (never stdout: a report may be there);
        a failed worker's output is cut to its tail, where the fatal message is."""
        log.seek(0)
        data = log.read()
        if not data:
            return ""
        if failed and len(data) > _LOG_TAIL:
            data = b"...\n" + data[-_LOG_TAIL:]
        with self._log_lock:
            self.progress.interject(data.decode("utf-8", "replace"), self.log_stream)
        return data[-_LOG_TAIL:].decode("utf-8", "replace")


def run_workers(targets: list[Target], options: AuditOptions, overrides, execution: ExecutionOptions,
                progress) -> dict[Target, tuple[TargetResult, list[Finding]]]:
    return LocalExecutor(options, overrides, execution, progress).run(targets)
