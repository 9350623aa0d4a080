"""Tolerances and output comparisons for the paired-forward checks (EG102, EG103, EG104).

Outputs arrive flattened, one ``{leaf name: tensor}`` per pass (names as
``evalguard.tensors.flatten_outputs`` gives them), and are compared leaf by leaf with
Polygraphy's rule (an element fails only when it exceeds both atol and rtol * |expected|).

Tolerances are chosen per dtype: the least precise floating dtype among the model's parameters
(``compute_dtype``). float32 and float64 models get the float32 defaults below; float16 and
bfloat16 models get defaults scaled from ``torch.finfo(dtype).eps`` (``atol = eps``,
``rtol = 2 * eps``: one rounding on each side), because float32 tolerances would make every
half-precision model fail on kernel noise. Tolerances the user configured are used as given.
The evidence states the tolerance together with the dtype it was chosen for.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from evalguard.tensors import Difference, compare

DEFAULT_ATOL = 1e-6
DEFAULT_RTOL = 1e-5
#: EG104 compares runs at different batch sizes, where BLAS/oneDNN legitimately pick other
#: kernels (float32 differences around 1e-6..1e-5); batch-statistics bugs differ by O(1).
BATCH_TOLERANCE_FACTOR = 100.0
#: The same for float16/bfloat16: their base tolerance already allows a rounding step, and
#: batch-statistics bugs still differ by O(1), far beyond 4 * (2 * eps).
LOW_PRECISION_BATCH_FACTOR = 4.0
LOW_PRECISION = (torch.float16, torch.bfloat16)


def low_precision_defaults(dtype: torch.dtype) -> tuple[float, float]:
    """(atol, rtol) for a float16/bfloat16 model: eps and 2 * eps of its dtype."""
    eps = torch.finfo(dtype).eps
    return eps, 2 * eps


def compute_dtype(model: Any) -> torch.dtype:
    """The least precise floating dtype among the parameters (float32 when there are none)."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()} if hasattr(model, "parameters") else set()
    if not dtypes:
        return torch.float32
    return max(dtypes, key=lambda d: torch.finfo(d).eps)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@dataclass(frozen=True)
class Tolerance:
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    per_output: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    #: The dtype the defaults were chosen for (None: not chosen by dtype, e.g. a strict comparison).
    dtype: torch.dtype | None = None

    @classmethod
    def from_options(cls, tolerances: Mapping[str, Any] | None, factor: float = 1.0,
                     dtype: torch.dtype | None = None) -> Tolerance:
        """``{"atol": .., "rtol": .., "outputs": {name: {"atol": .., "rtol": ..}}}``, scaled by ``factor``;
        what is not configured takes the defaults for ``dtype`` (float32's when None)."""
        tolerances = tolerances or {}
        default_atol, default_rtol = (low_precision_defaults(dtype) if dtype in LOW_PRECISION
                                      else (DEFAULT_ATOL, DEFAULT_RTOL))
        atol = float(tolerances.get("atol", default_atol))
        rtol = float(tolerances.get("rtol", default_rtol))
        per_output = {}
        for name, spec in (tolerances.get("outputs") or {}).items():
            if isinstance(spec, Mapping):
                per_output[str(name)] = (float(spec.get("atol", atol)) * factor,
                                         float(spec.get("rtol", rtol)) * factor)
        return cls(atol * factor, rtol * factor, per_output, dtype)

    @classmethod
    def paired(cls, tolerances: Mapping[str, Any] | None, dtype: torch.dtype) -> tuple[Tolerance, Tolerance]:
        """(same-input tolerance, batch-probe tolerance) for a model computing in ``dtype``."""
        factor = LOW_PRECISION_BATCH_FACTOR if dtype in LOW_PRECISION else BATCH_TOLERANCE_FACTOR
        return cls.from_options(tolerances, dtype=dtype), cls.from_options(tolerances, factor, dtype=dtype)

    def for_output(self, name: str) -> tuple[float, float]:
        """Per-output tolerance by full leaf name (``output.logits``) or without the ``output.`` prefix."""
        short = name.removeprefix("output.")
        return self.per_output.get(name) or self.per_output.get(short) or (self.atol, self.rtol)

    def loosest(self) -> Tolerance:
        """One tolerance for tensors that are no named output (module outputs): the loosest the
        user allowed anywhere, so a per-output allowance also covers the modules feeding it."""
        atol = max([self.atol, *(a for a, _ in self.per_output.values())])
        rtol = max([self.rtol, *(r for _, r in self.per_output.values())])
        return Tolerance(atol, rtol, dtype=self.dtype)

    def as_evidence(self) -> dict:
        evidence = {"atol": float(f"{self.atol:.3g}"), "rtol": float(f"{self.rtol:.3g}")}
        if self.dtype is not None:
            evidence["dtype"] = dtype_name(self.dtype)
        return evidence


def compare_flat(actual: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
                 tol: Tolerance) -> list[Difference]:
    """Leaf-by-leaf differences; a leaf missing on one side is a shape mismatch."""
    diffs = []
    for name in dict.fromkeys([*expected, *actual]):
        if name not in actual or name not in expected:
            inf = float("inf")
            diffs.append(Difference(name, inf, inf, inf, inf, 1.0, shape_mismatch=True))
            continue
        atol, rtol = tol.for_output(name)
        diffs.append(compare(name, actual[name], expected[name], atol, rtol))
    return diffs


def batched(tensor: Any, batch: int) -> bool:
    return isinstance(tensor, torch.Tensor) and tensor.dim() >= 1 and tensor.shape[0] == batch


def compare_rows(probe: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor],
                 rows: Sequence[int], batch: int, probe_batch: int, tol: Tolerance) -> list[Difference]:
    """Compare the first ``len(rows)`` samples of ``probe`` with ``reference[rows]``, batched leaves only.

    A leaf is batched when its first dimension is the batch size in both runs and its other
    dimensions agree; other leaves (pooled across the batch, flattened, scalars, trimmed to the
    batch's longest sample) cannot be matched sample by sample.
    """
    diffs = []
    index = torch.tensor(list(rows), dtype=torch.long)
    for name, expected in reference.items():
        actual = probe.get(name)
        if actual is None or not batched(expected, batch) or not batched(actual, probe_batch):
            continue
        if actual.shape[1:] != expected.shape[1:]:
            continue  # e.g. trimmed to the longest sample of each batch: not comparable row by row
        atol, rtol = tol.for_output(name)
        diffs.append(compare(name, actual[:len(rows)], expected.index_select(0, index.to(expected.device)),
                             atol, rtol))
    return diffs


def gap(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> float | None:
    """Largest failing abs difference (same rule as ``compare``), None when nothing fails.

    The cheap version for the per-module comparisons of the localisation passes, where most
    tensors are bit-identical: ``torch.equal`` answers those without arithmetic.
    """
    if actual.shape != expected.shape:
        return float("inf")
    expected = expected.to(actual.dtype)
    if torch.equal(actual, expected):
        return None
    a, e = actual.detach(), expected.detach()
    if not (a.is_floating_point() or a.is_complex()):
        a, e = a.double(), e.double()
    both_nan = torch.isnan(a) & torch.isnan(e)
    diff = torch.where(both_nan, torch.zeros_like(a.real if a.is_complex() else a), (a - e).abs())
    diff = torch.nan_to_num(diff, nan=float("inf"))
    failing = (diff > atol) & (diff > rtol * e.abs())
    return float(diff[failing].max()) if bool(failing.any()) else None


def worst(diffs: Sequence[Difference]) -> Difference | None:
    """The failing leaf with the largest absolute difference, or None when every leaf matches."""
    failing = [d for d in diffs if not d.matches]
    return max(failing, key=lambda d: d.max_abs_diff) if failing else None
