"""Child side of a trial load (run by ``evalguard.sandbox``, never in the audit's own process).

The file has already passed the static vetting; the trial shows that loading (and touching
what was loaded) neither crashes, hangs nor exhausts memory before the audit loads it for real.
"""
from __future__ import annotations

_TOUCH_LIMIT = 10_000


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
                from evalguard.loading.safe_load import unpickler_reason

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
