"""Compare ONNX Runtime outputs with PyTorch outputs, output by output, into report rows.

An element fails only when its error exceeds both ``atol`` and ``rtol * |expected|``
(Polygraphy's rule, implemented by ``evalguard.tensors.compare``). Each row adds what a
reviewer needs to judge a failure: the smallest atol (at the given rtol) and the smallest
rtol (at the given atol) that would pass, and a per-decade histogram of absolute errors.

Default tolerances were calibrated on random-weight transformers models exported with the
TorchScript exporter and run on ONNX Runtime CPU (batch 2): largest absolute error
ResNet-50 1.1e-5, BERT-base 3.3e-6, ViT-base 4.4e-6, GPT-2 small (dynamo) 3.2e-6, all at
rtol 1e-3. float32's atol 1e-4 leaves a 10x margin over the worst of them, while the bugs this
rule exists for (BatchNorm batch statistics, stale weights, an export-only approximation of
GELU) produce errors of 6e-3 and more.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from evalguard.facts import worst_abs_error  # noqa: F401 - the checks' name for it
from evalguard.tensors import abs_error, chunks, compare_errors, max_keeping_nan

#: (atol, rtol) per output dtype; integer and bool outputs must match exactly.
DEFAULT_TOLERANCES = {
    torch.float32: (1e-4, 1e-3),
    torch.float64: (1e-8, 1e-6),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 2e-2),
}
EXACT = (0.0, 0.0)
#: Decade edges of the absolute-error histogram.
_EDGES = [10.0 ** k for k in range(-8, 1)]
HISTOGRAM_LABELS = (["0", "<1e-8"] + [f"1e{k}..1e{k + 1}" for k in range(-8, 0)] + [">=1", "nan/inf"])


def tolerance(name: str, onnx_name: str, dtype: torch.dtype, overrides: Mapping[str, Any]) -> tuple[float, float]:
    """Defaults by dtype, then ``tolerances.atol/rtol``, then ``tolerances.outputs[name]``
    (the PyTorch leaf name, e.g. ``output.logits``, or the ONNX output name)."""
    atol, rtol = DEFAULT_TOLERANCES.get(dtype, EXACT)
    overrides = overrides or {}
    atol = float(overrides.get("atol", atol))
    rtol = float(overrides.get("rtol", rtol))
    per_output = overrides.get("outputs") or {}
    for key in (name, onnx_name):
        entry = per_output.get(key)
        if isinstance(entry, Mapping):
            atol = float(entry.get("atol", atol))
            rtol = float(entry.get("rtol", rtol))
            break
    return atol, rtol


def row(name: str, onnx_name: str, actual: np.ndarray | torch.Tensor, expected: torch.Tensor,
        overrides: Mapping[str, Any], *, comparison: str, batch: int | None,
        histogram: bool = True) -> dict[str, Any]:
    """One line of the parity table: plain values, floats rounded (NaN and inf kept as floats)."""
    actual_t = torch.as_tensor(actual) if not isinstance(actual, torch.Tensor) else actual
    atol, rtol = tolerance(name, onnx_name, expected.dtype, overrides)
    out: dict[str, Any] = {
        "output": name, "onnx_output": onnx_name, "comparison": comparison, "batch": batch,
        "shape": list(expected.shape), "dtype": str(expected.dtype).replace("torch.", ""),
        "atol": atol, "rtol": rtol,
    }
    if tuple(actual_t.shape) != tuple(expected.shape):
        out.update(passed=False, shape_mismatch=True, onnx_shape=list(actual_t.shape))
        return out
    # |error| and |expected| once per row: every statistic below reads them (a GPT-2 logits
    # tensor is 12.9M elements, and each recomputation cost a copy of it and a pass over it)
    err, magnitude = abs_error(actual_t, expected)
    if err.numel() == 0:
        out.update(passed=True, max_abs_diff=0.0, max_rel_diff=0.0, mean_abs_diff=0.0, median_abs_diff=0.0,
                   mismatched_fraction=0.0, min_passing_atol=0.0, min_passing_rtol=0.0)
        if histogram:
            out["histogram"] = histogram_of(err)
        return rounded(out)
    diff = compare_errors(name, err, magnitude, atol, rtol)
    out.update(passed=diff.matches, max_abs_diff=diff.max_abs_diff, max_rel_diff=diff.max_rel_diff,
               mean_abs_diff=diff.mean_abs_diff, median_abs_diff=diff.median_abs_diff,
               mismatched_fraction=diff.mismatched_fraction)
    out.update(_passing_tolerances(err, magnitude, atol, rtol))
    if histogram:
        out["histogram"] = histogram_of(err)
    return rounded(out)


def _passing_tolerances(err, magnitude, atol: float, rtol: float) -> dict[str, float]:
    """Smallest atol that passes at this rtol, and smallest rtol that passes at this atol."""
    min_atol = min_rtol = 0.0
    for diff, size in chunks(err, magnitude):
        beyond_rtol = diff > rtol * size
        if bool(beyond_rtol.any()):
            min_atol = max_keeping_nan(min_atol, float(diff[beyond_rtol].max()))
        beyond_atol = diff > atol
        if bool(beyond_atol.any()):
            min_rtol = max_keeping_nan(min_rtol, float((diff[beyond_atol] / size[beyond_atol]).max()))   # inf where expected is 0
    return {"min_passing_atol": min_atol, "min_passing_rtol": min_rtol}


def histogram_of(err) -> list[dict[str, Any]]:
    """Element counts of the absolute errors ``err`` per decade, in HISTOGRAM_LABELS order."""
    edges = torch.tensor(_EDGES, dtype=err.dtype)
    zero = nonfinite = 0
    counts = torch.zeros(len(_EDGES) + 1, dtype=torch.int64)
    for (diff,) in chunks(err):
        finite = torch.isfinite(diff)
        zero += int((diff == 0).sum())
        nonfinite += int(diff.numel() - finite.sum())
        positive = diff[finite & (diff > 0)]
        counts += torch.bincount(torch.bucketize(positive, edges, right=True), minlength=len(_EDGES) + 1)
    values = [zero] + counts.tolist() + [nonfinite]
    return [{"label": label, "count": count} for label, count in zip(HISTOGRAM_LABELS, values)]


def align(torch_names: list[str], torch_shapes: list[tuple], onnx_names: list[str],
          onnx_shapes: list[tuple]) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Pair ONNX outputs with PyTorch leaves: by name when every ONNX name is a leaf name (our
    own exports), else in order, skipping PyTorch leaves the file does not return (exporters
    drop constant and pass-through outputs) when the shapes say so.

    Returns (pairs of (torch index, onnx index), unmatched torch indices, unmatched onnx indices).
    """
    if onnx_names and all(name in torch_names for name in onnx_names):
        pairs = [(torch_names.index(name), j) for j, name in enumerate(onnx_names)]
    elif len(onnx_names) == len(torch_names):
        pairs = [(i, i) for i in range(len(onnx_names))]
    else:
        pairs, i = [], 0
        for j, shape in enumerate(onnx_shapes):
            k = i
            while k < len(torch_shapes) and tuple(torch_shapes[k]) != tuple(shape):
                k += 1
            if k < len(torch_shapes):
                pairs.append((k, j))
                i = k + 1
            elif i < len(torch_shapes):   # no leaf of this shape left: compare with the next one
                pairs.append((i, j))
                i += 1
    used_t = {p[0] for p in pairs}
    used_o = {p[1] for p in pairs}
    return (pairs, [i for i in range(len(torch_names)) if i not in used_t],
            [j for j in range(len(onnx_names)) if j not in used_o])


def rounded(value: Any) -> Any:
    """Floats to 4 significant digits, recursively; NaN and infinities stay floats (only the JSON
    reporter turns them into its text form)."""
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    return value




def failing(rows: list[dict]) -> list[dict]:
    return [r for r in rows if not r["passed"]]


def describe_failure(r: dict) -> str:
    """``output.logits: max abs 0.07 (atol 1e-4), 12.5% of elements out of tolerance``."""
    if "summary" in r:   # detection rows (checks/onnx/detection.py): matched boxes, not elements
        return f"{r['output']}: {r['summary']}"
    if r.get("shape_mismatch"):
        return f"{r['output']}: shape {r['onnx_shape']} in ONNX vs {r['shape']} in PyTorch"
    if r.get("budget_failure"):   # a quantized backend's row (backend_int8.judge)
        return f"{r['output']}: {r['budget_failure']}"
    share = r["mismatched_fraction"]
    share_text = f"{share * 100:.3g}%" if isinstance(share, float) else str(share)
    return (f"{r['output']}: max abs error {r['max_abs_diff']} (atol {r['atol']:g}, rtol {r['rtol']:g}), "
            f"{share_text} of elements out of tolerance")
