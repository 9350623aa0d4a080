"""EG903 in source: ``torch.load(..., weights_only=False)`` unpickles arbitrary objects."""
from __future__ import annotations

from typing import Iterator

from evalguard.checks.source.index import FileIndex, Hit, argument, calls_in, spelled

LOADERS = {"torch.load", "torch.serialization.load"}


def check(index: FileIndex) -> Iterator[Hit]:
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
