"""Per-module fingerprints of one forward pass, to decide determinism bitwise and cheaply.

EG103 compares two eval passes on the same input. Comparing only the model's outputs at the
strict tolerance misses a random module deep inside whose effect at the output is tiny (an
always-on attention dropout scaled down by later layers); keeping every module's outputs would
double the memory of the pass. Instead a forward hook on every module reduces each output
tensor to two scalars: the XOR of its bits (``torch.hash_tensor``) and its float64 sum. Two
passes on identical inputs with deterministic kernels give identical fingerprints; the first
module call whose fingerprint differs says a closer look (``trace.locate``, at the strict
tolerance) is needed, and that look names the module.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.utils._pytree as pytree

_HASH = getattr(torch, "hash_tensor", None)


def _leaf_print(tensor: torch.Tensor) -> torch.Tensor:
    """A few scalars (float64, on the tensor's device) that change when any element changes."""
    t = tensor.detach()
    if t.is_complex():
        t = torch.view_as_real(t)
    if t.numel() == 0 or t.layout != torch.strided or t.device.type == "meta":
        return torch.zeros(3, dtype=torch.float64, device=t.device)
    total = t.sum(dtype=torch.float64) if t.dtype != torch.bool else t.sum().double()
    total = torch.nan_to_num(total, nan=-1.0e300)   # NaN != NaN would look like randomness
    high = low = torch.zeros((), dtype=torch.float64, device=t.device)
    if _HASH is not None:
        try:
            # XOR of the raw bits (bit-exact for any dtype), as two halves float64 holds exactly.
            hashed = _HASH(t).view(torch.int64)
            high, low = ((hashed >> 32) & 0xFFFFFFFF).double(), (hashed & 0xFFFFFFFF).double()
        except (RuntimeError, TypeError, NotImplementedError):
            pass
    return torch.stack([total, high, low])


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
        for name, a, b in zip(self.names, self.rows, other.rows):
            if a.shape != b.shape or not torch.equal(a.cpu(), b.cpu()):
                return name
        return None


def _outputs(value) -> list[torch.Tensor]:
    return [leaf for leaf in pytree.tree_leaves(value) if isinstance(leaf, torch.Tensor)]


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
            row = torch.cat([_leaf_print(t).cpu() for t in leaves]) if leaves else torch.zeros(0)
        except Exception:  # noqa: BLE001 - an exotic tensor (quantized, subclass) must not break the forward
            row = torch.zeros(0)   # this call is compared by call order only; the outputs still are
        self.prints.rows.append(row)

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
