"""The second batch EG104 compares against: rows of the example batch, smaller and reordered.

Only rows of the user's own inputs are used (plus, for a lone sample, a companion made by
rolling that sample), so integer token ids and boolean masks always stay valid values.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.utils._pytree as pytree

from evalguard.subject import ExampleInputs


@dataclass
class BatchProbe:
    """A second batch built from the example batch: ``inputs[rows]``, then optional companion rows.

    Its first ``len(rows)`` samples are compared with the same rows of the full batch. With
    batch B >= 3 the rows are B-1..1 (a smaller batch in reverse order, so batch statistics
    and order both change); B == 2 runs sample 1 alone. A sample that cannot run alone (B == 1,
    or a model refusing a batch of one) gets a companion: the same sample rolled by one along
    its second dimension, so every value stays one the model was given (token ids stay in
    range) while per-channel batch statistics change.
    """

    batch: int
    rows: list[int]
    companions: int = 0
    inputs: ExampleInputs = field(repr=False, default=None)

    @property
    def size(self) -> int:
        return len(self.rows) + self.companions


def batch_size(inputs: ExampleInputs) -> tuple[int | None, str]:
    """The common first dimension of every non-scalar tensor input, or None and why not."""
    sizes = {}
    leaves = pytree.tree_leaves([list(inputs.args), dict(inputs.kwargs)])
    for index, leaf in enumerate(leaves):
        if isinstance(leaf, torch.Tensor) and leaf.dim() >= 1:
            sizes[index] = int(leaf.shape[0])
    if not sizes:
        return None, "no tensor input has a batch dimension"
    if len(set(sizes.values())) > 1:
        return None, f"tensor inputs have different first dimensions {sorted(set(sizes.values()))}"
    return next(iter(sizes.values())), ""


def sequence_first_module(model) -> str | None:
    """Name of a module that takes (sequence, batch, ...) inputs, when the model has one.

    With such modules (torch's RNN/LSTM/GRU and MultiheadAttention default to ``batch_first=False``)
    the first input dimension may be time, not batch, so EG104 cannot pick the batch dimension.
    """
    for name, module in model.named_modules():
        type_name = getattr(module, "original_name", None) or type(module).__name__
        torch_seq = isinstance(module, (torch.nn.RNNBase, torch.nn.MultiheadAttention))
        script_seq = type_name in {"RNN", "LSTM", "GRU", "MultiheadAttention"}
        if (torch_seq or script_seq) and not getattr(module, "batch_first", False):
            return f"{name or '(root)'} ({type_name}, batch_first=False)"
    return None


def probe_rows(batch: int) -> tuple[list[int], int]:
    """(rows, companions) for a batch of ``batch`` samples."""
    if batch == 1:
        return [0], 1
    if batch == 2:
        return [1], 0
    return list(range(batch - 1, 0, -1)), 0


def make_probe(inputs: ExampleInputs, batch: int, rows: list[int], companions: int = 0) -> BatchProbe:
    index = torch.tensor(rows, dtype=torch.long)

    def take(value):
        if not (isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == batch):
            return value
        picked = value.index_select(0, index.to(value.device))
        extra = picked[:1].roll(1, dims=1) if value.dim() >= 2 else picked[:1]
        return torch.cat([picked] + [extra] * companions) if companions else picked

    label = f"rows {rows} of the example batch" + (f" and {companions} companion(s)" if companions else "")
    probe_inputs = ExampleInputs(tuple(pytree.tree_map(take, list(inputs.args))),
                                 pytree.tree_map(take, dict(inputs.kwargs)), label)
    return BatchProbe(batch, rows, companions, probe_inputs)
