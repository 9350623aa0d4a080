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


def image_list_arg(inputs: ExampleInputs) -> int | None:
    """Index of the positional list of tensors (a detection model's images) when it is the only
    tensor input: its elements are the batch's samples. None otherwise."""
    from evalguard.checks.onnx.export import is_tensor_list

    lists = [i for i, value in enumerate(inputs.args) if is_tensor_list(value)]
    others = [v for i, v in enumerate(inputs.args) if i not in lists] + list(inputs.kwargs.values())
    if len(lists) != 1 or any(isinstance(leaf, torch.Tensor) for leaf in pytree.tree_leaves(others)):
        return None
    return lists[0]


def batch_size(inputs: ExampleInputs) -> tuple[int | None, str]:
    """The common first dimension of every non-scalar tensor input (for a list of images: its
    length), or None and why not."""
    listed = image_list_arg(inputs)
    if listed is not None:
        return len(inputs.args[listed]), ""
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
    listed = image_list_arg(inputs)
    if listed is not None:
        return _list_probe(inputs, listed, batch, rows, companions)
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


def _list_probe(inputs: ExampleInputs, position: int, batch: int, rows: list[int], companions: int) -> BatchProbe:
    """The probe for a list of images: the listed elements, companions rolled along the height."""
    images = inputs.args[position]
    picked = [images[r] for r in rows]
    extra = picked[0].roll(1, dims=1) if picked[0].dim() >= 2 else picked[0]
    args = list(inputs.args)
    args[position] = picked + [extra] * companions
    label = f"images {rows} of the example list" + (f" and {companions} companion(s)" if companions else "")
    return BatchProbe(batch, rows, companions, ExampleInputs(tuple(args), dict(inputs.kwargs), label))


def compare_probe(probe: BatchProbe, out: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
                  tol) -> list:
    """EG104's row comparisons. Batched tensors: ``compare.compare_rows``. Outputs that are a
    list with one entry per image of a list-of-images input (``output[i]...``, e.g. a detection
    model's list of dicts):
    entry i of the probe against entry ``rows[i]`` of the example batch, detections as matched
    boxes (``checks/onnx/detection``), other leaves tensor by tensor."""
    from evalguard.checks.eval_mode.compare import compare_flat, compare_rows

    if image_list_arg(probe.inputs) is None or not _per_sample(reference, probe.batch):
        return compare_rows(out, reference, probe.rows, probe.batch, probe.size, tol)
    from evalguard.checks.onnx import detection

    diffs = []
    for i, row in enumerate(probe.rows):
        mine = {name.removeprefix(f"output[{i}]"): t for name, t in out.items() if name.startswith(f"output[{i}]")}
        theirs = {name.removeprefix(f"output[{row}]"): t for name, t in reference.items()
                  if name.startswith(f"output[{row}]")}
        found = [p for p in detection.groups(list(theirs))
                 if detection.is_detection(detection.by_group(theirs, p))
                 and detection.is_detection(detection.by_group(mine, p))]
        for prefix in found:
            atol, rtol = tol.for_output(f"output[{row}]{prefix}.scores")
            diffs.append(detection.compare(f"output[{row}]{prefix}", detection.by_group(mine, prefix),
                                           detection.by_group(theirs, prefix), atol, rtol).difference())
        covered = {f"{prefix}.{key}" for prefix in found for key in detection.by_group(theirs, prefix)}
        rest = {k: v for k, v in theirs.items() if k not in covered}
        diffs += [d for d in compare_flat({f"output[{row}]{k}": v for k, v in mine.items() if k not in covered},
                                          {f"output[{row}]{k}": v for k, v in rest.items()}, tol)]
    return diffs


def _per_sample(reference: dict[str, torch.Tensor], batch: int) -> bool:
    """True when the outputs are a list of ``batch`` entries (``output[0]``..``output[batch-1]``)
    and nothing else."""
    heads = {name.split("]", 1)[0] + "]" for name in reference if name.startswith("output[")}
    return len(heads) == batch and len(heads) == len({n.split("]", 1)[0] for n in reference}) \
        and heads == {f"output[{i}]" for i in range(batch)}


#: EG104's budget for dynamically quantized models, as a share of each output's largest magnitude.
INT8_BUDGET = 0.05


def dynamic_quantized(model) -> str | None:
    """The first torch.ao dynamically quantized module (``quantize_dynamic``), as ``name (Type)``."""
    from evalguard.checks.onnx.precision import dynamic_quantized as first

    return first(model)


def int8_tolerance(reference: dict[str, torch.Tensor], tol):
    """The batch tolerance widened to the int8 budget: per output, an atol of ``INT8_BUDGET`` times
    its largest magnitude (and at least that rtol). Dynamic quantization takes each activation's
    scale from the min/max of the whole batch, so a sample's output legitimately moves by a few
    quantization steps with its batch; batch-statistics bugs move it by the order of the output."""
    from evalguard.checks.eval_mode.compare import Tolerance

    per_output = dict(tol.per_output)
    for name, tensor in reference.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.numel():
            atol, rtol = tol.for_output(name)
            peak = float(tensor.detach().abs().max())
            per_output[name] = (max(atol, INT8_BUDGET * peak), max(rtol, INT8_BUDGET))
    return Tolerance(tol.atol, max(tol.rtol, INT8_BUDGET), per_output, tol.dtype)


def int8_note(module: str) -> str:
    return (f"dynamically quantized model ({module}): int8 quantization takes each activation's scale from the "
            f"whole batch, so rows legitimately differ by a few quantization steps between batches; EG104 "
            f"allowed each output {INT8_BUDGET:.0%} of its largest magnitude (a batch-statistics bug differs "
            f"by the order of the output itself)")


def without_quantized(model, trace):
    """The trace without torch.ao dynamically quantized modules among its sources, when another
    module remains: their rows depend on the batch by design (the activation scale), so the
    module to name is the first one that is not one of them."""
    import dataclasses

    from evalguard.checks.onnx.precision import is_dynamic_quantized

    modules = dict(model.named_modules())
    kept = [s for s in trace.sources if not is_dynamic_quantized(modules.get(s.module))]
    if not kept or len(kept) == len(trace.sources):
        return trace
    return dataclasses.replace(trace, sources=kept)
