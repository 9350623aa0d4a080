"""Audit the ``.py`` targets of a run in parallel worker processes (issue 18).

A source file is checked from its AST alone (no user code runs), so the workers need no
isolation: they are forked from this process (``concurrent.futures.ProcessPoolExecutor`` with the
``fork`` start method), inherit the imported checks, and never import torch. Each worker takes
contiguous runs of the sorted target list and keeps its own lazily filled project index
(``evalguard.checks.source.project``): files in one folder import each other, so a worker mostly
parses the neighbours it needs once. Building the whole index up front in the parent and
sharing it by the fork would cost more than the parallel run itself (24.7 s serial for the torch
package against 19.9 s for its whole parallel check, bench/RESULTS.md). The per-target results
are the serial run's, target for target: the engine orders and reports them the same way.

Serial (an empty result: the engine audits the files itself) where forking does not pay:
one usable worker, fewer than ``MIN_FILES`` files with the worker count left to the default,
or no ``fork`` on this platform.
"""
from __future__ import annotations

import multiprocessing
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from evalguard.execution import ExecutionOptions, Target, cpu_count
from evalguard.findings import Finding, Severity, TargetResult
from evalguard.subject import AuditOptions

#: Below this many ``.py`` targets the default stays serial. Two idle cores break even at about
#: 10 files and gain 20 ms at 20 files, 60 ms at 40 (bench/RESULTS.md, "Source trees on both
#: cores"); on a busy machine forking loses, so the default keeps a margin.
MIN_FILES = 40
#: Work is handed out in about this many contiguous chunks per worker (load balance vs. the
#: project index each worker fills for the chunk's neighbours).
CHUNKS_PER_WORKER = 8

_options: AuditOptions | None = None
_overrides: Mapping[str, Severity] | None = None


def source_workers(execution: ExecutionOptions, files: int) -> int:
    """How many processes audit ``files`` source targets: 1 means in this process."""
    if files < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if execution.source_jobs is not None:
        return max(1, min(execution.source_jobs, files))
    if files < MIN_FILES:
        return 1
    return min(cpu_count(), files)


def _init(options: AuditOptions, overrides: Mapping[str, Severity] | None) -> None:
    global _options, _overrides
    from evalguard import engine

    engine.set_step_listener(None)      # the parent's progress line is the parent's
    _options, _overrides = options, overrides


def _audit_chunk(chunk: list[Target]) -> list[tuple[TargetResult, list[Finding]]]:
    from evalguard.engine import audit_one

    return [audit_one(lambda t=target: t.load(_options), target.display, _options, _overrides)
            for target in chunk]


def chunks(targets: list[Target], workers: int) -> list[list[Target]]:
    """Contiguous slices of ``targets``, about ``CHUNKS_PER_WORKER`` per worker, at least 4 files each."""
    size = max(4, -(-len(targets) // (workers * CHUNKS_PER_WORKER)))
    return [targets[i:i + size] for i in range(0, len(targets), size)]


def run_sources(targets: list[Target], options: AuditOptions, overrides: Mapping[str, Severity] | None,
                execution: ExecutionOptions, progress) -> dict[Target, tuple[TargetResult, list[Finding]]]:
    """Outcomes of the source targets audited in worker processes; {} when the run stays serial.
    A worker that dies (never expected: no user code runs) leaves its targets to the caller."""
    workers = source_workers(execution, len(targets))
    if workers < 2:
        return {}
    from evalguard.checks.source.check import preload

    preload()
    outcomes: dict[Target, tuple[TargetResult, list[Finding]]] = {}
    context = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init,
                                 initargs=(options, overrides)) as pool:
            for chunk, results in zip(parts := chunks(targets, workers), pool.map(_audit_chunk, parts)):
                for target, outcome in zip(chunk, results):
                    progress.begin(target.display)
                    outcomes[target] = outcome
                    progress.finish(target.display)
    except (BrokenProcessPool, OSError):
        pass       # what came back is kept; the engine audits the rest in this process
    return outcomes


__all__ = ["MIN_FILES", "chunks", "run_sources", "source_workers"]
