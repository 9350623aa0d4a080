"""Flatten model outputs of any structure into named tensors and compare them.

Shared by the paired-forward checks and the ONNX parity check, so both report differences
the same way. Imports torch: only import this from code that runs a model.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch


def flatten_outputs(value: Any, prefix: str = "output") -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) leaves of tensors, tuples, lists, dicts, dataclasses and ModelOutput."""
    if isinstance(value, torch.Tensor):
        return [(prefix, value)]
    if value is None or isinstance(value, (int, float, bool, str)):
        return []
    if isinstance(value, dict) or hasattr(value, "to_tuple") and hasattr(value, "keys"):
        leaves = []
        for key in value.keys():
            leaves.extend(flatten_outputs(value[key], f"{prefix}.{key}"))
        return leaves
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        leaves = []
        for f in dataclasses.fields(value):
            leaves.extend(flatten_outputs(getattr(value, f.name), f"{prefix}.{f.name}"))
        return leaves
    if isinstance(value, (list, tuple)):
        leaves = []
        for index, item in enumerate(value):
            leaves.extend(flatten_outputs(item, f"{prefix}[{index}]"))
        return leaves
    return []


@dataclass(frozen=True)
class Difference:
    """Element-wise comparison of two tensors (Polygraphy's rule: an element fails only
    when it exceeds both atol and rtol * |expected|)."""

    name: str
    max_abs_diff: float
    max_rel_diff: float
    mean_abs_diff: float
    median_abs_diff: float
    mismatched_fraction: float
    shape_mismatch: bool = False

    @property
    def matches(self) -> bool:
        return not self.shape_mismatch and self.mismatched_fraction == 0.0

    def as_evidence(self) -> dict:
        return {k: (round(v, 8) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


def abs_error(actual: torch.Tensor, expected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(|actual - expected|, |expected|) on the CPU; NaN where both are NaN counts as equal, any
    other NaN as an infinite error.

    Computed in float32, or float64 when either side is float64: a difference of two float32
    values is exact when they are within a factor of two of each other (Sterbenz), and where they
    are not, float32's relative rounding (6e-8) is far below any tolerance this is compared with.
    Float64 for everything doubled the memory and time of comparing a 2x128x50257 logits tensor."""
    dtype = torch.float64 if torch.float64 in (actual.dtype, expected.dtype) else torch.float32
    a = actual.detach().to("cpu", dtype)
    e = expected.detach().to("cpu", dtype)
    err = (a - e).abs_()
    both_nan = torch.isnan(a) & torch.isnan(e)
    if bool(both_nan.any()):
        err[both_nan] = 0.0
    return torch.nan_to_num_(err, nan=float("inf")), e.abs()


def compare(name: str, actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> Difference:
    if tuple(actual.shape) != tuple(expected.shape):
        inf = float("inf")
        return Difference(name, inf, inf, inf, inf, 1.0, shape_mismatch=True)
    if actual.numel() == 0:
        return Difference(name, 0.0, 0.0, 0.0, 0.0, 0.0)
    return compare_errors(name, *abs_error(actual, expected), atol, rtol)


#: Elements per slice when reducing error tensors: bounds the temporaries (masks, ratios) to a
#: few MiB each instead of several copies of a 2x128x50257 logits tensor (issue 18: GPT-2's
#: audit peaked 330 MiB above the bare script in exactly this comparison).
CHUNK = 1 << 20


def chunks(*tensors: torch.Tensor):
    """Matching flat slices of same-size contiguous tensors, ``CHUNK`` elements at a time."""
    flat = [t.reshape(-1) for t in tensors]
    for start in range(0, flat[0].numel(), CHUNK):
        yield tuple(t[start:start + CHUNK] for t in flat)


def compare_errors(name: str, abs_diff: torch.Tensor, magnitude: torch.Tensor, atol: float, rtol: float) -> Difference:
    """The Difference of two same-shape, non-empty tensors from ``abs_error``'s result."""
    max_abs = max_rel = total = 0.0
    failing = 0
    for diff, size in chunks(abs_diff, magnitude):
        failing += int(((diff > atol) & (diff > rtol * size)).sum())
        rel = diff / size.clamp_min(1e-12)
        rel[diff == 0] = 0.0
        max_abs = max_keeping_nan(max_abs, float(diff.max()))
        max_rel = max_keeping_nan(max_rel, float(rel.max()))
        total += float(diff.sum(dtype=torch.float64))
    return Difference(
        name=name,
        max_abs_diff=max_abs,
        max_rel_diff=max_rel,
        mean_abs_diff=total / abs_diff.numel(),
        median_abs_diff=float(abs_diff.median()),
        mismatched_fraction=failing / abs_diff.numel(),
    )


def max_keeping_nan(a: float, b: float) -> float:
    """max() that keeps a NaN from either side, as torch's max over the whole tensor would:
    the running maximum of slice-by-slice reductions."""
    return b if b != b or b > a else a
