"""EG903 in source: ``torch.load`` that unpickles arbitrary objects.

Reported: ``weights_only=False`` known statically (any torch), and a ``torch.load`` without
``weights_only`` when the project allows torch < 2.6, where the default is still ``False``: the
declared requirement is read by ``requirements.torch_floor`` (no declaration allows any torch, so a
bare call is reported then too). A project that requires torch >= 2.6 gets the safe default.
"""
from __future__ import annotations

from collections.abc import Iterator

from evalguard.checks.source.index import FileIndex, Hit, argument, calls_in, spelled
from evalguard.checks.source.requirements import torch_floor

LOADERS = {"torch.load", "torch.serialization.load"}
SAFE_DEFAULT = (2, 6)


def check(index: FileIndex) -> Iterator[Hit]:
    floor = None
    for scope, call in calls_in(index):
        if index.qualname(call.func) not in LOADERS:
            continue
        flag = argument(index, scope, call, "weights_only")
        if flag is not None and index.value(flag, scope) is False:
            yield Hit("EG903", call, (
                f"{spelled(call.func)}(..., weights_only={spelled(flag)}) unpickles arbitrary objects: "
                "loading an untrusted file runs its code; keep weights_only=True (the default since "
                "torch 2.6) and allow extra classes with torch.serialization.add_safe_globals"),
                {"function": index.qualname(call.func), "weights_only": spelled(flag)})
        elif flag is None and not any(kw.arg is None for kw in call.keywords):
            if floor is None:
                floor = torch_floor(index.path)
            version, source = floor
            if version is None or version < SAFE_DEFAULT:
                allowed = f"torch >= {'.'.join(map(str, version))}" if version else "any torch version"
                yield Hit("EG903", call, (
                    f"{spelled(call.func)}(...) without weights_only unpickles arbitrary objects on torch "
                    f"< 2.6, and this project allows {allowed} ({source}); pass weights_only=True, or "
                    "require torch>=2.6"),
                    {"function": index.qualname(call.func), "weights_only": "default",
                     "torch_requirement": allowed, "requirement_source": source})
