"""Per-module fingerprints of one forward pass, to decide determinism bitwise and cheaply.

EG103 compares two eval passes on the same input. Comparing only the model's outputs at the
strict tolerance misses a random module deep inside whose effect at the output is tiny (an
always-on attention dropout scaled down by later layers); keeping every module's outputs would
double the memory of the pass. Instead a forward hook on every module reduces each output
tensor to one 64-bit word: the XOR of its elements' bits (``torch.hash_tensor``, which widens
each element to 64 bits first, so any change of any element changes the word unless another
change cancels it bit for bit). Two passes on identical inputs with deterministic kernels give
identical fingerprints; the first module call whose fingerprint differs says a closer look
(``trace.locate``, at the strict tolerance) is needed, and that look names the module.

Cost matters: the hook runs for every module call of two passes. One reduction per tensor,
kept on the tensor's device (no host sync per call on a GPU), is the whole price. A float64
sum next to the hash (the previous design) cost 2-3x more and added nothing the hash misses;
it remains the fallback where ``hash_tensor`` does not exist or refuses a dtype, compared by
its bits so that NaN equals NaN.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.utils._pytree as pytree

_HASH = getattr(torch, "hash_tensor", None)


def _leaf_print(tensor: torch.Tensor) -> torch.Tensor:
    """One int64 word (a 1-element tensor on the tensor's device) that changes when any element changes."""
    t = tensor.detach()
    if t.is_complex():
        t = torch.view_as_real(t)
    if t.numel() == 0 or t.layout != torch.strided or t.device.type == "meta":
        return torch.zeros(1, dtype=torch.int64, device=t.device)
    if _HASH is not None:
        try:
            return _HASH(t).view(torch.int64).reshape(1)
        except (RuntimeError, TypeError, NotImplementedError):
            pass
    total = t.sum(dtype=torch.float64) if t.dtype != torch.bool else t.sum().double()
    return total.view(torch.int64).reshape(1)


@dataclass
class Prints:
    """Module calls in entry order: names, and one fingerprint row per call; ``note`` when hooks could not run."""

    names: list[str] = field(default_factory=list)
    rows: list[torch.Tensor] = field(default_factory=list)
    note: str = ""

    def first_difference(self, other: Prints) -> str | None:
        """Name of the first module call whose outputs differ bitwise, '' for call order, None if equal."""
        if self.note or other.note:
            return None
        if self.names != other.names:
            for a, b in zip(self.names, other.names):
                if a != b:
                    return a
            return ""
        mine, theirs = _host(self.rows), _host(other.rows)
        for name, a, b in zip(self.names, mine, theirs):
            if a.shape != b.shape or not torch.equal(a, b):
                return name
        return None


def _host(rows: list[torch.Tensor]) -> list[torch.Tensor]:
    """The rows on the CPU, moved in one transfer per device rather than one per module call."""
    if not rows or all(r.device.type == "cpu" for r in rows):
        return rows
    sizes = [r.numel() for r in rows]
    flat = torch.cat([r.to(rows[0].device) for r in rows]).cpu()
    return list(flat.split(sizes))


def _outputs(value) -> list[torch.Tensor]:
    return [leaf for leaf in pytree.tree_leaves(value) if isinstance(leaf, torch.Tensor)]


def _row(words: list[torch.Tensor]) -> torch.Tensor:
    if not words:
        return torch.zeros(0, dtype=torch.int64)
    if len(words) == 1:
        return words[0]
    device = words[0].device
    return torch.cat([w.to(device) for w in words])


class Recorder:
    """Forward hooks on every module of ``model`` that fill a ``Prints`` while active."""

    def __init__(self, model):
        self.model = model
        self.prints = Prints()
        self.handles = []

    def __enter__(self) -> Prints:
        if isinstance(self.model, torch.jit.ScriptModule) or not isinstance(self.model, torch.nn.Module):
            self.prints.note = "forward hooks are not supported on this model"
            return self.prints
        for name, module in self.model.named_modules():
            self.handles.append(module.register_forward_hook(
                lambda mod, args, out, name=name: self._record(name, out)))
        return self.prints

    def _record(self, name: str, output) -> None:
        self.prints.names.append(name)
        try:
            leaves = _outputs(output)
            row = _row([_leaf_print(t) for t in leaves])
        except Exception:  # noqa: BLE001 - an exotic tensor (quantized, subclass) must not break the forward
            row = torch.zeros(0, dtype=torch.int64)   # this call is compared by call order only; the outputs still are
        self.prints.rows.append(row)

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
