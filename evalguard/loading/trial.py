"""Trial loads: a file whose loading runs more than torch's tensor rebuilding is loaded first in
a sandboxed child (``evalguard.sandbox``), and audited only inside an isolated worker.

A trial is needed for TorchScript archives, ``.pt2`` programs and pickles whose globals reach
outside torch and the standard library (numpy, ``--trust-module`` packages): loading those runs
a program or a package's code. ``trial_load`` is called by the loaders at exactly that point:

* in the audit's own process it raises ``NeedsWorker``: the engine then audits the target in a
  worker process (``evalguard.execution.local``), limited and confined like the trial, so no
  program of the file ever loads, or runs its forward, in the audit's process;
* inside such a worker it loads the file once in a sandboxed child; a crash, hang or memory
  blow-up there refuses the file (EG905), and only then does the worker load it for real.

``load`` is the child side.
"""
from __future__ import annotations

from pathlib import Path

_TOUCH_LIMIT = 10_000
#: Room a trial load gets on top of its size at the start (plus twice the file's size).
TRIAL_MEMORY = 8 << 30


def trial_load(path: Path, how: str, names=(), trust_modules=(), kind: str = "unknown") -> None:
    from evalguard import sandbox
    from evalguard.errors import NeedsWorker, TargetError
    from evalguard.loading.refusal import refuse_container

    if not sandbox.in_isolated_child():
        raise NeedsWorker(f"{path}: loading it needs an isolated worker ({how})")
    size = path.stat().st_size if path.is_file() else 0
    limits = sandbox.Limits(memory_bytes=TRIAL_MEMORY + 2 * size)
    worker = sandbox.entered_limits()
    if worker and worker.memory_bytes and worker.memory_bytes < limits.memory_bytes:
        limits = sandbox.Limits(memory_bytes=worker.memory_bytes, memory_flag=worker.memory_flag)
    try:
        sandbox.run_isolated("evalguard.loading.trial:load", str(path.resolve()), how, list(names),
                             list(trust_modules), limits=limits)
    except sandbox.SandboxError as exc:
        if exc.reason == "setup":   # evalguard's child broke before the file was touched: EG900
            from evalguard.errors import InternalError

            raise InternalError("trial-load child set-up", exc) from None
        if exc.reason == "error":
            raise TargetError(f"{path}: cannot be loaded: {exc}") from None
        raise refuse_container(path, f"loading it in an isolated process {exc}", kind=kind) from None


def load(path: str, how: str, names: list[str], trust_modules: list[str]) -> str:
    import pickle

    import torch

    if how == "torch-load":
        from evalguard.loading.allowlist import ALLOWED, AllowList, numpy_dtype_classes
        from evalguard.loading.pickle_scan import GlobalRef

        allowlist = AllowList(trust_modules)
        dtype_classes = dict(numpy_dtype_classes())
        register = []
        for name in names:
            if name in dtype_classes:
                register.append(dtype_classes[name])
                continue
            module, _, attr = name.rpartition(".")
            decision = allowlist.decide(GlobalRef(module, attr))
            if decision.status != ALLOWED:
                raise PermissionError(f"{name} is not allowed")
            register += [decision.obj] if decision.obj is not None else []
            register += [obj for _name, obj in decision.extra]
        with torch.serialization.safe_globals(register):
            with open(path, "rb") as handle:
                mmap = handle.read(4) == b"PK\x03\x04"
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except pickle.UnpicklingError as exc:   # torch's reason, not its multi-line preamble
                from evalguard.loading.refusal import unpickler_reason

                raise pickle.UnpicklingError(unpickler_reason(exc)) from None
        _touch(obj)
        return type(obj).__name__
    if how == "torchscript":
        return type(torch.jit.load(path, map_location="cpu")).__name__
    if how == "exported-program":
        return type(torch.export.load(path).module()).__name__
    raise ValueError(f"unknown trial {how!r}")


def _touch(obj) -> None:
    """Walk containers and render numpy values: a forged dtype crashes here, not in the audit."""
    pending, seen = [obj], 0
    while pending and seen < _TOUCH_LIMIT:
        item = pending.pop()
        seen += 1
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            pending.extend(item)
        elif type(item).__module__.split(".")[0] == "numpy":
            repr(item)
            if hasattr(item, "tolist"):
                item.tolist()
