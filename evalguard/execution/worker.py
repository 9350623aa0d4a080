"""Worker process: ``main([FD])`` audits one target (started by ``evalguard.execution.local``).

The parent (``evalguard.execution.local``) writes the job to our stdin with pickle: it holds
the run's own ``AuditOptions``, built by the parent, never anything read from a user's file.
Everything we send back goes over file descriptor FD as JSON lines:
``{"step": "eval_mode"}`` while the audit moves on, then one
``{"result": {"target": ..., "findings": [...]}, "peak_rss_kib": N}`` built with the JSON
report's own converters, or ``{"usage_error": "..."}``. Whatever the audited code prints goes
to the files the parent gave us as stdout and stderr.
"""
from __future__ import annotations

import faulthandler
import os
import pickle
import resource
import sys


def enter(job: dict) -> list[str]:
    """Limit and confine this worker with the sandbox's primitive: address space (``memory``),
    CPU time (``cpu_seconds``: a backstop for a worker whose parent is gone),
    writes only in the job's scratch folder (and the ``--keep-onnx`` folder). The limits that
    could not be set come back as notes; ``SandboxError`` when no room is left at all."""
    from evalguard import sandbox

    limits = sandbox.Limits(wall_seconds=None, cpu_seconds=job.get("cpu_seconds"), memory_bytes=job.get("memory_limit"),
                            memory_flag=job.get("memory_flag") or "--memory-limit")
    return sandbox.enter_child(limits, job.get("scratch"), tuple(job.get("writable", ())))


def _limit_threads(threads: int | None) -> None:
    """Share the cores between workers: torch intra-op threads (ONNX Runtime follows them)."""
    if not threads:
        return
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


def peak_rss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak   # bytes on macOS, KiB on Linux


def run(job: dict, send) -> None:
    from evalguard import engine
    from evalguard.errors import UsageError
    from evalguard.reporters.json_report import finding_to_dict, target_to_dict

    target, options, overrides = job["target"], job["options"], job["overrides"]
    engine.set_step_listener(lambda step: send({"step": step}))
    try:
        result, findings = engine.audit_target(target, options, overrides)
    except UsageError as exc:
        send({"usage_error": str(exc)})
        return
    send({"result": {"target": target_to_dict(result), "findings": [finding_to_dict(f) for f in findings]},
          "peak_rss_kib": peak_rss_kib()})


def serve_job(job: dict, channel_fd: int) -> None:
    """Audit the job's target, reporting over ``channel_fd``; closes it when done."""
    from evalguard import sandbox

    def send(message: dict) -> None:
        sandbox.send(channel_fd, message)

    faulthandler.enable()                 # a segfault or abort leaves a Python traceback in the log
    sys.path[:] = [*job["sys_path"], *(p for p in sys.path if p not in job["sys_path"])]
    _limit_threads(job.get("threads"))    # imports torch
    try:
        notes = enter(job)
    except Exception as exc:  # noqa: BLE001 - the sandbox's SandboxError("limits"): say why, do nothing
        send({"limits_error": str(exc)})
        os.close(channel_fd)
        return
    send({"ready": True, "notes": notes})  # --timeout counts from here: start-up is not the target's
    try:
        run(job, send)
    except BaseException as exc:   # evalguard's own bug outside any target: say what, then die
        send({"internal_error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]})
        raise
    os.close(channel_fd)


def main(argv: list[str] | None = None) -> int:
    """A worker of its own: ``main([FD])``, the job pickled on stdin."""
    argv = sys.argv[1:] if argv is None else argv
    from evalguard.sandbox import die_with_parent, expected_parent

    if argv and argv[0] == "zygote":
        from evalguard.execution.zygote import serve

        serve(int(argv[1]))
        return 0
    die_with_parent(expected_parent())    # a spawned worker: our parent is evalguard itself
    job = pickle.load(sys.stdin.buffer)   # from our parent process (see the module docstring)
    sys.stdin.close()
    serve_job(job, int(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
