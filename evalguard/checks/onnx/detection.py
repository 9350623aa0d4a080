"""Compare detection outputs (torchvision's ``[{"boxes", "labels", "scores"}, ...]``) as sets of
boxes, not as tensors: two runs of the same detector may return the same detections in another
order, or a different number of them, when scores tie at a cut-off (top-k, score threshold, NMS
among equal scores). Raw tensors of different lengths cannot be compared element by element.

Two sides (e.g. ONNX Runtime and PyTorch, or a sample alone and in its batch) are matched box
by box: greedily by IoU (at least ``MATCH_IOU``) among boxes of the same label. Matched pairs
must agree in score and coordinates within the tolerance (the usual rule: an element fails only
beyond both atol and rtol * |expected|). A box left unmatched is tolerated only where it sits
at a tie: its score is within the tolerance of an unmatched box's score on the other side (the
two kept different boxes among equal scores) or of the other side's lowest score (it fell just
below the cut-off). Any other unmatched box is a difference: a detection one side has and the
other does not.

Other per-detection outputs of the same image (masks, keypoints) are compared on the matched
pairs. Used by the ONNX check (EG401, EG404) and the batch probe (EG104).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from evalguard.tensors import Difference

KEYS = ("boxes", "scores")
MATCH_IOU = 0.5
METHOD = (f"detections matched by IoU >= {MATCH_IOU} within each label; scores and box coordinates "
          "compared on matched pairs; an unmatched box is tolerated only at a score tie or the cut-off")


def groups(names: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{image prefix: {key: leaf index}}`` for every prefix with both ``boxes`` and ``scores``
    leaves (``output[0].boxes`` -> ``output[0]``); empty when the outputs are no detections."""
    found: dict[str, dict[str, int]] = {}
    for index, name in enumerate(names):
        prefix, dot, key = name.rpartition(".")
        if dot:
            found.setdefault(prefix, {})[key] = index
    return {prefix: keys for prefix, keys in found.items() if all(k in keys for k in KEYS)}


def is_detection(group: dict) -> bool:
    """One image's detections: ``boxes`` of shape (N, 4) and ``scores`` of shape (N,) (a batched
    (B, N, 4) tensor, e.g. DETR-style predictions, is compared as a tensor instead)."""
    boxes, scores = group.get("boxes"), group.get("scores")
    return (boxes is not None and scores is not None and boxes.dim() == 2 and boxes.shape[-1] == 4
            and scores.dim() == 1 and len(scores) == len(boxes))


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix of (x1, y1, x2, y2) boxes; 0 where a union is empty."""
    a, b = a.double(), b.double()
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def match(boxes_a, labels_a, boxes_b, labels_b) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs (i in a, j in b), highest IoU first, same label, IoU >= MATCH_IOU."""
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return []
    iou = box_iou(boxes_a, boxes_b)
    if labels_a is not None and labels_b is not None:
        iou = torch.where(labels_a[:, None] == labels_b[None, :], iou, torch.zeros_like(iou))
    candidates = torch.nonzero(iou >= MATCH_IOU)
    order = torch.argsort(iou[candidates[:, 0], candidates[:, 1]], descending=True, stable=True)
    used_a, used_b, pairs = set(), set(), []
    for i, j in candidates[order].tolist():
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return pairs


@dataclass
class DetectionDiff:
    name: str
    count_actual: int
    count_expected: int
    matched: int
    tied: int              # unmatched boxes tolerated at a score tie or the cut-off
    unexplained: int       # unmatched boxes that are real differences
    failing_pairs: int     # matched pairs whose score, box or other output differs
    max_score_diff: float
    max_box_diff: float
    atol: float
    rtol: float

    @property
    def passed(self) -> bool:
        return self.unexplained == 0 and self.failing_pairs == 0

    def difference(self) -> Difference:
        """As the paired-forward checks' ``Difference`` (an unexplained box counts as infinite)."""
        worst = max(self.max_score_diff, self.max_box_diff)
        if self.unexplained:
            worst = math.inf
        total = max(self.count_actual, self.count_expected, 1)
        fraction = (self.unexplained + self.failing_pairs) / total
        return Difference(f"{self.name} ({self.describe()})", worst, worst, worst, worst, fraction)

    def describe(self) -> str:
        text = (f"{self.matched} of {self.count_expected} detections matched, {self.count_actual} on the "
                f"other side; score diff up to {self.max_score_diff:.3g}, box diff up to {self.max_box_diff:.3g}")
        if self.tied:
            text += f"; {self.tied} unmatched at a score tie or the cut-off"
        if self.unexplained:
            text += f"; {self.unexplained} detection(s) only on one side"
        return text


def _within(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> torch.Tensor:
    """Per row: every element within atol or rtol * |expected|."""
    diff = (actual.double() - expected.double()).abs()
    ok = (diff <= atol) | (diff <= rtol * expected.double().abs())
    return ok.reshape(len(ok), -1).all(dim=1) if ok.dim() > 1 else ok


def _ties(scores, atol: float, rtol: float) -> torch.Tensor:
    """Per detection: True when another detection of the same side has the same score within the
    tolerance (which of them a top-k or NMS keeps is then arbitrary)."""
    s = scores.double().flatten()
    if len(s) < 2:
        return torch.zeros(len(s), dtype=torch.bool)
    gap = (s[:, None] - s[None, :]).abs()
    close = (gap <= atol) | (gap <= rtol * s.abs()[None, :])
    close.fill_diagonal_(False)
    return close.any(dim=1)


def _tied(unmatched: list[int], scores, own_ties, other_unmatched: list[int], other_scores, atol, rtol) -> int:
    """How many of ``unmatched`` sit at a tie: the score ties with another detection on its own
    side and with an unmatched one on the other side (the two sides kept different ones of equal
    score), or it is within tolerance of the other side's lowest score (it fell at the cut-off)."""
    pool = [float(other_scores[j]) for j in other_unmatched]
    floor = float(other_scores.min()) if len(other_scores) else None
    count = 0
    for i in unmatched:
        s = float(scores[i])
        near = lambda p, s=s: abs(s - p) <= max(atol, rtol * abs(p))  # noqa: E731
        if (bool(own_ties[i]) and any(near(p) for p in pool)) or (floor is not None and near(floor)):
            count += 1
    return count


def compare(name: str, actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
            atol: float, rtol: float) -> DetectionDiff:
    """One image's detections: ``actual`` against ``expected`` (dicts with boxes, scores, labels...)."""
    actual = {k: torch.as_tensor(v).cpu() for k, v in actual.items()}
    expected = {k: torch.as_tensor(v).cpu() for k, v in expected.items()}
    pairs = match(actual["boxes"], actual.get("labels"), expected["boxes"], expected.get("labels"))
    ia = torch.tensor([i for i, _ in pairs], dtype=torch.long)
    ib = torch.tensor([j for _, j in pairs], dtype=torch.long)
    failing = torch.zeros(len(pairs), dtype=torch.bool)
    gaps: dict[str, torch.Tensor] = {}
    if pairs:
        for key, value in expected.items():
            other = actual.get(key)
            if other is None or other.dim() == 0 or len(other) != len(actual["boxes"]) \
                    or len(value) != len(expected["boxes"]):
                continue
            a, e = other.index_select(0, ia), value.index_select(0, ib)
            if a.shape != e.shape:
                failing |= True
                continue
            failing |= ~_within(a, e, atol, rtol)
            if key in ("scores", "boxes"):
                gaps[key] = (a.double() - e.double()).abs().reshape(len(a), -1).amax(dim=1)
    ties_a, ties_b = _ties(actual["scores"], atol, rtol), _ties(expected["scores"], atol, rtol)
    # a failing pair of two tied detections is two boxes of equal score, each kept by one side
    swapped = [k for k in range(len(pairs)) if failing[k] and ties_a[pairs[k][0]] and ties_b[pairs[k][1]]]
    failing[swapped] = False
    kept = [p for k, p in enumerate(pairs) if k not in set(swapped)]
    only_a = sorted(set(range(len(actual["boxes"]))) - {i for i, _ in kept})
    only_b = sorted(set(range(len(expected["boxes"]))) - {j for _, j in kept})
    tied = (_tied(only_a, actual["scores"], ties_a, only_b, expected["scores"], atol, rtol)
            + _tied(only_b, expected["scores"], ties_b, only_a, actual["scores"], atol, rtol))
    pairs = kept
    still = torch.tensor([k for k in range(len(failing)) if k not in set(swapped)], dtype=torch.long)
    max_score, max_box = (float(gaps[key][still].max()) if key in gaps and len(still) else 0.0
                          for key in ("scores", "boxes"))
    unmatched = len(only_a) + len(only_b)
    return DetectionDiff(name, len(actual["boxes"]), len(expected["boxes"]), len(pairs), tied, unmatched - tied,
                         int(failing[still].sum()) if len(still) else 0, max_score, max_box, atol, rtol)


def by_group(leaves: dict[str, torch.Tensor], prefix: str, keys: dict[str, int] | None = None) -> dict:
    """The ``{key: tensor}`` of one image from flat ``{name: tensor}`` leaves."""
    start = prefix + "."
    return {name[len(start):]: t for name, t in leaves.items()
            if name.startswith(start) and "." not in name[len(start):]}


def parity_rows(names: list[str], onnx_names: list[str], outputs, expected, tolerances, *,
                comparison: str, batch) -> tuple[list[dict], set[str]] | None:
    """ONNX parity rows for detection outputs, one per image, or None when the outputs are no
    detections or the file's outputs cannot be paired with them by name (our own export names
    them after the PyTorch leaves). Returns the rows and the leaf names they cover; the caller
    compares the other leaves as tensors."""
    from evalguard.checks.onnx.compare import rounded, tolerance

    torch_by_name = dict(zip(names, expected))
    found = {p: keys for p, keys in groups(names).items() if is_detection(by_group(torch_by_name, p))}
    if not found or not set(onnx_names) <= set(names):
        return None
    onnx_by_name = {n: torch.as_tensor(o) for n, o in zip(onnx_names, outputs)}
    rows, compared = [], []
    for prefix in found:
        mine = by_group(torch_by_name, prefix)
        theirs = by_group(onnx_by_name, prefix)
        if not is_detection(theirs):
            continue   # left to the tensor comparison (the caller gets it back as not covered)
        compared.append(prefix)
        atol, rtol = tolerance(prefix + ".scores", prefix + ".scores", mine["scores"].dtype, tolerances)
        diff = compare(prefix, theirs, mine, atol, rtol)
        rows.append(rounded({
            "output": prefix, "onnx_output": ", ".join(f"{prefix}.{k}" for k in theirs), "comparison": comparison,
            "batch": batch, "shape": [len(mine["boxes"])], "dtype": "detections", "atol": atol, "rtol": rtol,
            "passed": diff.passed, "max_abs_diff": max(diff.max_score_diff, diff.max_box_diff),
            "mismatched_fraction": diff.difference().mismatched_fraction,
            "detections_torch": diff.count_expected, "detections_onnx": diff.count_actual,
            "matched": diff.matched, "unmatched_at_ties": diff.tied, "unmatched": diff.unexplained,
            "max_score_diff": diff.max_score_diff, "max_box_diff": diff.max_box_diff,
            "method": METHOD, "summary": diff.describe()}))
    covered = {f"{prefix}.{key}" for prefix in compared for key in by_group(torch_by_name, prefix)}
    return rows, covered
