"""``--executor ray``: each model target is one Ray task (``pip install 'evalguard[ray]'``).

Without ``--ray-address`` a local Ray instance is started for the run and stopped after it;
with it, the tasks go to that cluster, whose nodes need evalguard (and the audited code's
packages) installed. Each task asks for its own resources: ``threads_per_worker(--jobs)`` CPUs
(the torch threads it may use), ``--memory-limit`` as Ray's ``memory`` reservation (and, as with
local workers, as the task process's address-space cap), one GPU with ``--device cuda``. A Ray
worker process runs a single task (``max_calls=1``) and is not retried, so a crash, an abort or
an out-of-memory kill ends that target only: it becomes the target's error with Ray's cause, and
``--timeout`` cancels the task. Results stream back as tasks finish (the progress line follows)
and the report is the same as with local workers.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Mapping

from evalguard.errors import UsageError
from evalguard.execution import ExecutionOptions, Target, threads_per_worker
from evalguard.findings import SKIPPED, Finding, RuleCoverage, Severity, TargetResult
from evalguard.subject import AuditOptions

#: How long ``ray.wait`` blocks before the timeouts are looked at again.
_POLL_S = 0.5


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs the 'ray' package: pip install 'evalguard[ray]'") from None
    return ray


def audit_task(target: Target, options: AuditOptions, overrides: Mapping[str, Severity], sys_path: list[str],
               threads: int, memory_limit: int | None) -> dict:
    """Runs in a Ray worker: one target, returned as the JSON report's dicts (as local workers send)."""
    sys.path[:] = [*sys_path, *(p for p in sys.path if p not in sys_path)]
    from evalguard import engine
    from evalguard.execution import worker
    from evalguard.reporters.json_report import finding_to_dict, target_to_dict

    worker._limit_threads(threads)
    worker._limit_memory(memory_limit)
    try:
        result, findings = engine.audit_target(target, options, overrides)
    except UsageError as exc:
        return {"usage_error": str(exc)}
    return {"result": {"target": target_to_dict(result), "findings": [finding_to_dict(f) for f in findings]},
            "peak_rss_kib": worker.peak_rss_kib()}


def _error(target: Target, options: AuditOptions, cause: str) -> tuple[TargetResult, list[Finding]]:
    detail = f"{target.display}: {cause}"
    not_checked = {rule: RuleCoverage(SKIPPED, detail) for rule in sorted(options.selected)}
    return TargetResult(target.display, "unknown", "error", detail, not_checked), []


def _cause(exc: BaseException) -> str:
    """Ray's exception as one line: which kind of failure, and its first message line."""
    text = str(exc).strip().splitlines()
    first = next((line.strip() for line in text if line.strip()), "")
    return f"the Ray task failed: {type(exc).__name__}: {first[:300]}"


class RayExecutor:
    def __init__(self, options: AuditOptions, overrides: Mapping[str, Severity] | None,
                 execution: ExecutionOptions, progress):
        self.options, self.overrides = options, dict(overrides or {})
        self.execution, self.progress = execution, progress
        self.threads = threads_per_worker(execution.jobs)

    def _resources(self) -> dict:
        resources: dict = {"num_cpus": self.threads, "max_retries": 0}
        if self.execution.memory_limit:
            resources["memory"] = self.execution.memory_limit
        if self.options.device == "cuda":
            resources["num_gpus"] = 1
        return resources

    def run(self, targets: list[Target]) -> dict[Target, tuple[TargetResult, list[Finding]]]:
        if not targets:
            return {}
        ray = _import_ray()
        # Ray prints worker deaths and other notices on stdout, where a report may be going.
        with contextlib.redirect_stdout(sys.stderr):
            return self._with_ray(ray, targets)

    def _with_ray(self, ray, targets: list[Target]) -> dict[Target, tuple[TargetResult, list[Finding]]]:
        started_here = not ray.is_initialized()
        if started_here:
            logging.getLogger("ray").setLevel(logging.ERROR)   # start-up notices are not findings
            try:
                ray.init(address=self.execution.ray_address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False,
                         runtime_env={"env_vars": {"PYTHONPATH": ":".join(p for p in sys.path if p)}}
                         if self.execution.ray_address is None else None)
            except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
                raise UsageError(f"--executor ray: cannot start or reach Ray"
                                 f"{f' at {self.execution.ray_address}' if self.execution.ray_address else ''}: "
                                 f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}") from None
        try:
            return self._run(ray, targets)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray, targets: list[Target]) -> dict[Target, tuple[TargetResult, list[Finding]]]:
        task = ray.remote(max_calls=1)(audit_task).options(**self._resources())
        pending: dict = {}
        started: dict = {}
        for target in targets:
            ref = task.remote(target, self.options, self.overrides, list(sys.path), self.threads,
                              self.execution.memory_limit)
            pending[ref] = target
            started[ref] = time.monotonic()
            self.progress.begin(target.display)
        results: dict[Target, tuple[TargetResult, list[Finding]]] = {}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_S)
                for ref in done:
                    target = pending.pop(ref)
                    results[target] = self._outcome(ray, ref, target)
                    self.progress.finish(target.display)
                self._cancel_late(ray, pending, started, results)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return {target: results[target] for target in targets}

    def _cancel_late(self, ray, pending: dict, started: dict, results: dict) -> None:
        timeout = self.execution.timeout
        if timeout is None:
            return
        now = time.monotonic()
        for ref in [r for r in pending if now - started[r] > timeout]:
            target = pending.pop(ref)
            ray.cancel(ref, force=True)
            results[target] = _error(target, self.options,
                                     f"timed out after {timeout:g}s (--timeout); the Ray task was cancelled")
            self.progress.finish(target.display)

    def _outcome(self, ray, ref, target: Target) -> tuple[TargetResult, list[Finding]]:
        from evalguard.reporters.json_report import finding_from_dict, target_from_dict

        try:
            message = ray.get(ref)
        except ray.exceptions.RayError as exc:
            return _error(target, self.options, _cause(exc))
        if "usage_error" in message:
            raise UsageError(message["usage_error"])
        result = message["result"]
        return target_from_dict(result["target"]), [finding_from_dict(f) for f in result["findings"]]


def run_on_ray(targets: list[Target], options: AuditOptions, overrides, execution: ExecutionOptions,
               progress) -> dict[Target, tuple[TargetResult, list[Finding]]]:
    return RayExecutor(options, overrides, execution, progress).run(targets)
