"""How targets are run: in this process or one worker process each, how many at once, which
shard of the targets this run owns. Nothing here imports torch.

``evalguard.execution.local`` runs one target per worker process (``evalguard.execution.worker``)
and turns a crash, a kill, an out-of-memory abort or a timeout into that target's error.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from evalguard.errors import NeedsWorker, UsageError  # noqa: F401 - NeedsWorker re-exported

T = TypeVar("T")

#: Wall-clock limit per worker process when ``--timeout`` is not given: a program that hangs
#: (a ``while`` loop in a TorchScript method) ends as that target's error, never a hung run.
#: It grows with the target's size: ``DEFAULT_TIMEOUT_BASE`` seconds plus
#: ``DEFAULT_TIMEOUT_PER_100MIB`` per 100 MiB of model files, at most ``DEFAULT_TIMEOUT``
#: (which a ``--model`` factory target, of no known size, gets).
DEFAULT_TIMEOUT = 900.0
DEFAULT_TIMEOUT_BASE = 90.0
DEFAULT_TIMEOUT_PER_100MIB = 60.0


def default_timeout(size_bytes: int | None) -> float:
    """The default wall-clock limit of a worker auditing ``size_bytes`` of model files."""
    if size_bytes is None:
        return DEFAULT_TIMEOUT
    return min(DEFAULT_TIMEOUT, DEFAULT_TIMEOUT_BASE + DEFAULT_TIMEOUT_PER_100MIB * size_bytes / (100 << 20))


def target_size(path: str | None) -> int | None:
    """Bytes of a target's files (a folder: its regular files, links not followed); None when unknown."""
    if path is None:
        return None
    try:
        if not os.path.isdir(path):
            return os.path.getsize(path)
        total = 0
        for root, _dirs, files in os.walk(path):
            for name in files:
                full = os.path.join(root, name)
                if not os.path.islink(full):
                    total += os.path.getsize(full)
        return total
    except OSError:
        return None


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ExecutionOptions:
    """``--isolate/--no-isolate``, ``--jobs`` (model targets at once; processes for ``.py`` targets),
    ``--timeout``, ``--memory-limit``, ``--shard``, ``--quiet``."""

    isolate: bool | None = None        # None: isolate when more than one model target (or a limit is set)
    jobs: int = 1                      # model targets audited at once
    timeout: float | None = None       # seconds per model target, worker start included
    memory_limit: int | None = None    # bytes of address space per worker (RLIMIT_AS)
    shard: tuple[int, int] | None = None   # (K, N): this run audits slice K of N
    progress: bool = True              # a progress line on an interactive stderr
    executor: str = "local"            # "local" (worker processes here) or "ray" (evalguard.execution.ray)
    ray_address: str | None = None     # local (None: a private Ray instance), auto, HOST:PORT (evalguard.execution.ray_tasks)
    retries: int = 0                   # Ray: audits of a target whose actor died, beyond the first
    source_jobs: int | None = None     # processes for the .py targets; None: the cores, serial for few files

    def worker_timeout(self, size_bytes: int | None = None) -> float:
        """Seconds a worker may run: ``--timeout``, else ``default_timeout`` of the target's size."""
        return self.timeout if self.timeout is not None else default_timeout(size_bytes)

    def worker_memory(self, device: str = "cpu") -> tuple[int | None, str]:
        """Address space a worker may add to its size, and how messages name that limit:
        ``--memory-limit``, else the machine's memory (so a memory bomb fails an allocation in
        that worker, not the kernel's out-of-memory killer elsewhere); none with CUDA, which
        reserves address space by the tens of GiB."""
        if self.memory_limit:
            return self.memory_limit, "--memory-limit"
        if device == "cuda":
            return None, ""
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "the worker's memory limit (the machine's RAM)"
        except (ValueError, OSError, AttributeError):
            return None, ""

    def isolated(self, model_targets: int) -> bool:
        if self.executor == "ray":
            return True
        if self.isolate is not None:
            return self.isolate
        return model_targets > 1 or self.timeout is not None or self.memory_limit is not None


@dataclass(frozen=True)
class Target:
    """One target of a run: a path from the command line or, with ``path`` None, the ``--model`` factory."""

    index: int             # position in the expanded command line (report order)
    display: str           # the path (or factory spec) the report shows
    path: str | None
    planned: bool = False              # architecture/paired_onnx decided by evalguard.planning
    architecture: str | None = None    # the --model this target is loaded into (None: its own / none)
    paired_onnx: str | None = None     # x.onnx found beside x.pt: this target's --onnx

    @property
    def is_source(self) -> bool:
        return self.path is not None and self.path.endswith((".py", ".ipynb"))

    def options_for(self, options):
        """The run's options as this target sees them (its own --model and --onnx)."""
        if not self.planned or self.path is None:
            return options
        from dataclasses import replace

        return replace(options, model_factory=self.architecture,
                       onnx_file=options.onnx_file or self.paired_onnx)

    def load(self, options):
        from evalguard.loading import load_factory_subject, load_target

        if self.path is None:
            return load_factory_subject(options)
        subject = load_target(self.path, self.options_for(options))
        if self.paired_onnx and subject.load is not None and not options.onnx_file:
            from dataclasses import replace

            from evalguard.planning import PAIRED_LABEL

            subject.load = replace(subject.load, details=(*subject.load.details, (PAIRED_LABEL, self.paired_onnx)))
        return subject


def parse_memory(text: str) -> int:
    """``4G``, ``512M``, ``1.5GiB``, ``1000000`` (bytes) -> bytes (binary units)."""
    match = _SIZE.match(text or "")
    if not match:
        raise UsageError(f"--memory-limit expects a size such as 4G, 512M or 1.5GiB, got {text!r}")
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size <= 0:
        raise UsageError(f"--memory-limit must be positive, got {text!r}")
    return size


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` with 1 <= K <= N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise UsageError(f"--shard expects K/N (e.g. 2/4), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise UsageError(f"--shard {text}: K must be between 1 and N")
    return index, count


def build_execution(isolate: bool | None = None, jobs: int | None = None, timeout: float | None = None,
                    memory_limit: str | None = None, shard: str | None = None,
                    quiet: bool = False, executor: str = "local",
                    ray_address: str | None = None, retries: int | None = None) -> ExecutionOptions:
    """Validate the command-line flags (one ``error:`` line for each mistake)."""
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {timeout}")
    limit = parse_memory(memory_limit) if memory_limit is not None else None
    if isolate is False and (timeout is not None or limit is not None):
        raise UsageError("--timeout and --memory-limit need worker processes; drop --no-isolate")
    if isolate is False and jobs is not None and jobs > 1:
        raise UsageError("--jobs needs worker processes; drop --no-isolate")
    if executor not in ("local", "ray"):
        raise UsageError(f"--executor must be local or ray, got {executor!r}")
    if ray_address is not None and executor != "ray":
        raise UsageError("--ray-address needs --executor ray")
    if retries is not None and executor != "ray":
        raise UsageError("--retries needs --executor ray (a local worker that crashes is not retried)")
    if retries is not None and retries < 0:
        raise UsageError(f"--retries must be 0 or more, got {retries}")
    if ray_address is not None and not ray_address.strip():
        raise UsageError("--ray-address expects local, auto or HOST:PORT")
    if executor == "ray" and isolate is False:
        raise UsageError("--executor ray runs every model target in a Ray task; drop --no-isolate")
    if limit is not None and not hasattr(os, "fork"):
        raise UsageError("--memory-limit is not supported on this platform")
    return ExecutionOptions(isolate=isolate, jobs=jobs or 1, source_jobs=jobs, timeout=timeout, memory_limit=limit,
                            shard=parse_shard(shard) if shard is not None else None, progress=not quiet,
                            executor=executor, ray_address=ray_address, retries=retries or 0)


def shard_slice(items: Sequence[T], shard: tuple[int, int] | None, key=str) -> list[T]:
    """Items of shard K/N: sorted by ``key``, every N-th starting at K-1; original order kept.

    The slice depends only on the set of targets, so every shard of a CI matrix that expands
    the same arguments agrees on who audits what, and the N slices cover every target once.
    """
    if shard is None:
        return list(items)
    index, count = shard
    ranked = sorted(range(len(items)), key=lambda i: (key(items[i]), i))
    mine = {position for rank, position in enumerate(ranked) if rank % count == index - 1}
    return [item for i, item in enumerate(items) if i in mine]


def cpu_count() -> int:
    """Cores this process may use (CPU affinity and container limits where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def threads_per_worker(jobs: int) -> int:
    """Torch (and ONNX Runtime) threads for each of ``jobs`` workers: the cores shared out."""
    return max(1, cpu_count() // max(1, jobs))
