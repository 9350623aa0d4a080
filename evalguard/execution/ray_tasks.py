"""``--executor ray``: model targets audited by a pool of warm Ray actors (``pip install 'evalguard[ray]'``).

Where: ``--ray-address local`` (the default) starts a private Ray instance for the run and stops
it after; it never joins a cluster already running on the machine. ``auto`` joins that cluster,
``HOST:PORT`` (or ``ray://HOST:PORT``) the one there. An address nothing answers at is a usage
error within seconds, as is a request no node can meet (``--memory-limit`` above every node's
memory, ``--device cuda`` without a GPU node): both are checked before anything is submitted.

How: ``--jobs N`` actors (fewer for fewer targets), each importing torch, ONNX Runtime and
transformers once and then auditing one target at a time in a fresh child it forks, as the local
fork server does (``evalguard.execution.worker.serve_job``): a crash, an abort or a memory-limit
hit ends the child, never the actor, and is that target's error. ``--timeout`` counts from the
moment the child is ready, so queued targets are never charged for waiting. Each actor asks
Ray for its cores (the cluster's CPUs shared out between the actors, at most one node's) and
``--memory-limit`` as its ``memory`` reservation (also the child's address-space cap), one GPU
with ``--device cuda``.

An actor that dies (its node lost, its process killed) fails the target it held with Ray's
cause, and a fresh actor takes its place; ``--retries N`` (default 0) audits such a target again
up to N times, and a target that needed more than one attempt says so in the report.

The actors run in the driver's working directory with the driver's ``sys.path`` when the node
has them (this machine, a shared filesystem); on a joined cluster the working directory also
travels as the ``runtime_env`` ``working_dir`` (model files left out) so ``--model`` and
``--trust-module`` code can be imported. What the audited code prints reaches the driver's stderr.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from evalguard.errors import UsageError
from evalguard.execution import ExecutionOptions, Target, cpu_count
from evalguard.findings import SKIPPED, Finding, RuleCoverage, Severity, TargetResult
from evalguard.subject import AuditOptions

#: How long ``ray.wait`` blocks before the driver looks at its backstop deadlines again.
_POLL_S = 0.5
#: A reachable address must answer a TCP connect within this many seconds.
_CONNECT_S = 5.0
#: The driver's backstop past ``--timeout`` (the actor enforces the timeout itself).
_BACKSTOP_S = 60.0
#: How long the actors may take to start (Ray workers, warm imports) before it is a usage error.
_ACTOR_START_S = 300.0
#: Left out of the ``working_dir`` sent to a joined cluster: model files and environments.
_EXCLUDES = ["*.pt", "*.pth", "*.ckpt", "*.pt2", "*.onnx", "*.safetensors", "*.bin", "*.pkl", "*.npz",
             ".git", ".venv", "venv", "__pycache__", "node_modules"]


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs the 'ray' package: pip install 'evalguard[ray]'") from None
    return ray


# ------------------------------------------------------------------ inside the actor
def _read_child(fd: int, timeout: float | None, state: dict, on_step=None) -> bool:
    """JSON lines from the child until it closes the pipe (the sandbox's one protocol, which
    closes ``fd``); False when ``timeout`` (counted from its ``ready``) passed. ``state``
    collects the last step and the final message."""
    from evalguard import sandbox

    startup_deadline = time.monotonic() + 300.0 if timeout is not None else None

    def deadline():
        started = state.get("started")
        return startup_deadline if started is None else (None if timeout is None else started + timeout)

    def on_message(message: dict) -> None:
        if "ready" in message:
            state["started"] = time.monotonic()
        elif "step" in message:
            state["step"] = message["step"]
            if on_step is not None:
                on_step(message["step"])
        else:
            state["message"] = message

    return sandbox.read_messages(fd, deadline, on_message)


def _detach_from_actor(keep_fd: int, actor_pid: int) -> None:
    """In the child: die with the actor (a lost actor must not leave its child running) and close
    the actor's sockets, so Ray sees the actor's death when it happens, not when the child ends."""
    from evalguard import sandbox

    sandbox.die_with_parent(actor_pid)
    sandbox.close_inherited_fds(keep=keep_fd)


def _run_child(job: dict, timeout: float | None, on_step=None) -> dict:
    """Fork one child that audits ``job``; how it ended, as a dict for the driver."""
    from evalguard.execution import worker

    read_fd, write_fd = os.pipe()
    actor_pid = os.getpid()
    pid = os.fork()
    if pid == 0:                               # the child: audit, report, never return
        code = 1
        try:
            os.close(read_fd)
            _detach_from_actor(write_fd, actor_pid)
            os.setsid()
            os.dup2(2, 1)                     # the audited code's prints: stderr, forwarded by Ray
            worker.serve_job(job, write_fd)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    state: dict = {"step": "starting the worker"}
    finished = _read_child(read_fd, timeout, state, on_step)   # closes read_fd
    if not finished:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.monotonic() - state.get("started", time.monotonic())
    return {"message": state.get("message"), "timed_out": not finished, "code": os.waitstatus_to_exitcode(status),
            "peak_rss_kib": usage.ru_maxrss, "last_step": state["step"], "seconds": seconds,
            "node": socket.gethostname()}


class _Auditor:
    """The Ray actor: warm imports once, then one forked child per target."""

    def __init__(self, cwd: str, sys_path: list[str]):
        if os.path.isdir(cwd):
            os.chdir(cwd)                      # relative targets and --model paths as on the driver
        sys.path[:] = [*sys_path, *(p for p in sys.path if p not in sys_path)]
        sys.stdout = sys.stderr
        self.pid = os.getpid()
        self.step = ""
        _warm_imports()

    def where(self) -> dict:
        return {"pid": self.pid, "node": socket.gethostname()}

    def audit(self, job: dict, timeout: float | None) -> dict:
        self.step = "starting"
        try:
            return _run_child(job, timeout, on_step=lambda step: setattr(self, "step", step))
        finally:
            self.step = ""

    def current_step(self) -> str:
        """The step the target being audited has reached (answered while ``audit`` runs)."""
        return self.step


def _warm_imports() -> None:
    """What the local fork server imports before forking (its list, when it has one)."""
    import importlib

    from evalguard.execution import zygote

    preload = getattr(zygote, "_preload", None)
    if preload is not None:
        preload()
        return
    for name in ("torch", "onnx", "onnxruntime", "transformers", "evalguard.engine", "evalguard.loading.formats"):
        with contextlib.suppress(Exception):
            importlib.import_module(name)


# ------------------------------------------------------------------ in the driver
def _error(target: Target, options: AuditOptions, cause: str) -> tuple[TargetResult, list[Finding]]:
    detail = f"{target.display}: {cause}"
    not_checked = {rule: RuleCoverage(SKIPPED, detail) for rule in sorted(options.selected)}
    return TargetResult(target.display, "unknown", "error", detail, not_checked), []


def _cause(exc: BaseException) -> str:
    """Ray's exception as one line: which kind of failure, and its first message line."""
    text = str(exc).strip().splitlines()
    first = next((line.strip() for line in text if line.strip()), "")
    return f"the Ray actor auditing it died: {type(exc).__name__}: {first[:300]}"


def _size(num_bytes: float) -> str:
    return f"{num_bytes / (1 << 30):.1f} GiB" if num_bytes >= 1 << 30 else f"{num_bytes / (1 << 20):.0f} MiB"


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} (signal {number})"
    except ValueError:
        return f"signal {number}"


def child_cause(outcome: dict, execution: ExecutionOptions) -> str:
    """Why a child gave no result: the timeout, the signal or the exit code, with its notes."""
    if outcome["timed_out"]:
        what = f"timed out after {execution.timeout:g}s (--timeout); the worker was killed"
    elif outcome["code"] < 0:
        what = f"the worker was killed by {_signal_name(-outcome['code'])}"
    elif outcome.get("message") and "internal_error" in outcome["message"]:
        what = f"internal error in evalguard's worker: {outcome['message']['internal_error']}"
    else:
        what = f"the worker exited with code {outcome['code']} without a result"
    notes = [f"last step: {outcome['last_step']}", f"peak RSS {_size(outcome['peak_rss_kib'] * 1024)}",
             f"Ray node {outcome['node']}"]
    if execution.memory_limit and not outcome["timed_out"]:
        notes.append(f"--memory-limit {_size(execution.memory_limit)}")
    return f"{what} ({'; '.join(notes)})"


def check_reachable(address: str) -> None:
    """``HOST:PORT`` or ``ray://HOST:PORT`` must accept a TCP connection (Ray itself retries for minutes)."""
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--ray-address {address}: expected local, auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=_CONNECT_S).close()
    except OSError as exc:
        raise UsageError(f"--ray-address {address}: no Ray cluster answers there "
                         f"({exc.strerror or type(exc).__name__})") from None


@dataclass
class Request:
    """What one actor asks of a node."""

    cpus: int
    memory: int | None = None
    gpus: int = 0

    def resources(self) -> dict:
        out: dict = {"num_cpus": self.cpus}
        if self.memory:
            out["memory"] = self.memory
        if self.gpus:
            out["num_gpus"] = self.gpus
        return out


def unmet(request: Request, nodes: list[dict]) -> str | None:
    """Why no alive node can hold one actor, naming the resource; None when one can."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", n.get("alive", True))]
    if not alive:
        return "the Ray cluster has no alive node"
    needs = [("CPU", request.cpus, "cores", lambda v: f"{v:g}", "--jobs shares the cluster's cores")]
    if request.memory:
        needs.append(("memory", request.memory, "memory for tasks", _size, "--memory-limit"))
    if request.gpus:
        needs.append(("GPU", request.gpus, "GPUs", lambda v: f"{v:g}", "--device cuda"))
    for key, amount, noun, show, flag in needs:
        if not any(node.get(key, 0) >= amount for node in alive):
            largest = max(node.get(key, 0) for node in alive)
            return (f"{flag}: each actor needs {show(amount)} {noun} ({key}), and no node of the Ray cluster "
                    f"has that much (largest: {show(largest)})")
    if not any(all(node.get(key, 0) >= amount for key, amount, *_ in needs) for node in alive):
        return "no node of the Ray cluster has all of " + ", ".join(f"{k} {a}" for k, a, *_ in needs)
    return None


@dataclass
class _Slot:
    actor: object
    target: Target | None = None
    ref: object = None
    since: float = 0.0
    step_ref: object = None


@dataclass
class _Run:
    pending: list[Target]
    attempts: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)


class RayExecutor:
    def __init__(self, options: AuditOptions, overrides: Mapping[str, Severity] | None,
                 execution: ExecutionOptions, progress):
        self.options, self.overrides = options, dict(overrides or {})
        self.execution, self.progress = execution, progress

    @property
    def address(self) -> str:
        return self.execution.ray_address or "local"

    def run(self, targets: list[Target]) -> dict[Target, tuple[TargetResult, list[Finding]]]:
        if not targets:
            return {}
        ray = _import_ray()
        if self.address not in ("local", "auto"):
            check_reachable(self.address)
        # Ray prints worker output and notices on stdout, where a report may be going.
        with contextlib.redirect_stdout(sys.stderr):
            return self._with_ray(ray, targets)

    def _init(self, ray) -> None:
        logging.getLogger("ray").setLevel(logging.ERROR)   # start-up notices are not findings
        kwargs = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
        if self.address == "local":
            kwargs["num_cpus"] = cpu_count()
        else:
            kwargs["runtime_env"] = {"working_dir": os.getcwd(), "excludes": _EXCLUDES}
        try:
            ray.init(address=self.address, **kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
            first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            where = "start a private Ray instance" if self.address == "local" else f"join Ray at {self.address}"
            raise UsageError(f"--executor ray: cannot {where}: {first}") from None

    def _with_ray(self, ray, targets: list[Target]) -> dict[Target, tuple[TargetResult, list[Finding]]]:
        if ray.is_initialized():
            started_here = False
        else:
            self._init(ray)
            started_here = True
        try:
            nodes = ray.nodes()
            request = self.request(ray.cluster_resources(), nodes)
            problem = unmet(request, nodes)
            if problem:
                raise UsageError(problem)
            return self._run(ray, targets, request)
        finally:
            if started_here:
                ray.shutdown()

    def request(self, cluster: Mapping, nodes: list[dict]) -> Request:
        """Each actor's share: the cluster's cores split between ``--jobs`` actors, at most one node's."""
        jobs = max(1, self.execution.jobs)
        largest = max((n.get("Resources", {}).get("CPU", 0) for n in nodes if n.get("Alive", True)), default=1)
        cpus = max(1, min(int(largest), int(cluster.get("CPU", 1)) // jobs))
        return Request(cpus=cpus, memory=self.execution.memory_limit,
                       gpus=1 if self.options.device == "cuda" else 0)

    def _actor(self, ray, request: Request):
        cls = ray.remote(_Auditor).options(**request.resources(), max_restarts=0, max_task_retries=0,
                                           max_concurrency=2)     # audit() and current_step()
        return cls.remote(os.getcwd(), list(sys.path))

    def _job(self, target: Target, request: Request) -> dict:
        return {"target": target, "options": self.options, "overrides": self.overrides,
                "sys_path": list(sys.path), "threads": request.cpus, "memory_limit": self.execution.memory_limit}

    def _run(self, ray, targets: list[Target], request: Request) -> dict[Target, tuple[TargetResult, list[Finding]]]:
        run = _Run(pending=list(targets))
        slots = [_Slot(self._actor(ray, request)) for _ in range(min(self.execution.jobs, len(targets)))]
        try:
            self._await_actors(ray, slots)
            while run.pending or any(s.target is not None for s in slots):
                for slot in slots:
                    if slot.target is None and run.pending:
                        self._start(slot, run.pending.pop(0), request)
                busy = {s.ref: s for s in slots if s.target is not None}
                done, _ = ray.wait(list(busy), num_returns=1, timeout=_POLL_S)
                for ref in done:
                    self._collect(ray, busy[ref], run, request)
                self._show_steps(ray, slots)
                self._backstop(ray, slots, run, request)
        except BaseException:
            for slot in slots:
                with contextlib.suppress(Exception):
                    ray.kill(slot.actor)
            raise
        for slot in slots:
            with contextlib.suppress(Exception):
                ray.kill(slot.actor)
        return {target: run.results[target] for target in targets}

    def _await_actors(self, ray, slots: list[_Slot]) -> None:
        """Targets' clocks start once the actors have imported torch & co (Ray's start-up and
        the warm imports are nobody's audit time); a cluster too busy to place them is a usage error."""
        ready, waiting = ray.wait([s.actor.where.remote() for s in slots], num_returns=len(slots),
                                  timeout=_ACTOR_START_S)
        if waiting:
            raise UsageError(f"--executor ray: {len(waiting)} of {len(slots)} Ray actors did not start within "
                             f"{_ACTOR_START_S:g}s (the cluster's CPUs or memory are taken by other work?)")
        try:
            ray.get(ready)
        except ray.exceptions.RayError as exc:     # evalguard or torch missing on a node, ...
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise UsageError(f"--executor ray: the Ray actors could not start: {first[:300]}") from None

    def _show_steps(self, ray, slots: list[_Slot]) -> None:
        """Ask each busy actor for its target's step (one question in flight per actor)."""
        for slot in slots:
            if slot.target is None:
                slot.step_ref = None
                continue
            if slot.step_ref is not None:
                ready, _ = ray.wait([slot.step_ref], timeout=0)
                if not ready:
                    continue
                with contextlib.suppress(Exception):
                    step = ray.get(slot.step_ref)
                    if step and slot.target is not None:
                        self.progress.step(step, slot.target.display)
            slot.step_ref = slot.actor.current_step.remote()

    def _start(self, slot: _Slot, target: Target, request: Request) -> None:
        slot.target, slot.since = target, time.monotonic()
        slot.ref = slot.actor.audit.remote(self._job(target, request), self.execution.timeout)
        self.progress.begin(target.display)

    def _collect(self, ray, slot: _Slot, run: _Run, request: Request) -> None:
        target = slot.target
        slot.target = None
        run.attempts[target] = run.attempts.get(target, 0) + 1
        try:
            outcome = ray.get(slot.ref)
        except ray.exceptions.RayError as exc:      # the actor died: a lost node, a killed process
            slot.actor = self._actor(ray, request)
            self._failed(target, run, _cause(exc))
            return
        message = outcome.get("message") or {}
        if "usage_error" in message:
            raise UsageError(message["usage_error"])
        if "result" in message and not outcome["timed_out"]:
            from evalguard.reporters.json_report import finding_from_dict, target_from_dict

            result = message["result"]
            found = target_from_dict(result["target"]), [finding_from_dict(f) for f in result["findings"]]
            run.results[target] = self._noted(found, run.attempts[target])
            self.progress.finish(target.display, peak_rss_kib=outcome["peak_rss_kib"], status=found[0].status)
            return
        run.results[target] = _error(target, self.options, child_cause(outcome, self.execution))
        self.progress.finish(target.display, peak_rss_kib=outcome["peak_rss_kib"], status="error")

    def _failed(self, target: Target, run: _Run, cause: str) -> None:
        """The actor was lost: audit the target again while ``--retries`` allows."""
        if run.attempts[target] <= self.execution.retries:
            self.progress.finish(target.display, status=f"retrying ({cause[:80]})")
            run.pending.insert(0, target)
            return
        tries = run.attempts[target]
        suffix = f" (after {tries} attempts, --retries {self.execution.retries})" if tries > 1 else ""
        run.results[target] = _error(target, self.options, cause + suffix)
        self.progress.finish(target.display, status="error")

    def _noted(self, found, attempts: int):
        """A target audited on a later attempt says so in its detail."""
        result, findings = found
        if attempts > 1:
            from dataclasses import replace

            note = f"audited on attempt {attempts} (--retries {self.execution.retries}): an earlier Ray actor died"
            result = replace(result, detail="; ".join(filter(None, [result.detail, note])))
        return result, findings

    def _backstop(self, ray, slots: list[_Slot], run: _Run, request: Request) -> None:
        """The actor enforces ``--timeout``; an actor stuck past it (and a margin) is replaced."""
        if self.execution.timeout is None:
            return
        now = time.monotonic()
        for slot in slots:
            if slot.target is not None and now - slot.since > self.execution.timeout + _BACKSTOP_S:
                target = slot.target
                slot.target = None
                with contextlib.suppress(Exception):
                    ray.kill(slot.actor)
                slot.actor = self._actor(ray, request)
                run.attempts[target] = run.attempts.get(target, 0) + 1
                run.results[target] = _error(target, self.options,
                                             f"timed out after {self.execution.timeout:g}s (--timeout); "
                                             "the Ray actor did not answer and was replaced")
                self.progress.finish(target.display, status="error")


def run_on_ray(targets: list[Target], options: AuditOptions, overrides, execution: ExecutionOptions,
               progress) -> dict[Target, tuple[TargetResult, list[Finding]]]:
    return RayExecutor(options, overrides, execution, progress).run(targets)
