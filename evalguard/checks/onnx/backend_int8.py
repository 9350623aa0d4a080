"""``ort-int8`` in ``--backends``: ONNX Runtime dynamic int8 quantization of the exported file.

``onnxruntime.quantization.quantize_dynamic`` (int8 weights, activations quantized per call) of the
ONNX file EG401 ran, on the CPU provider. An int8 model is not expected to meet float32 tolerances,
so each output is judged against a stated **quantization budget** instead (``BUDGET``):

- the relative error of the output, ``||int8 - eager|| / ||eager||`` (L2 over the whole tensor),
  at most ``relative_error``;
- for an output whose last dimension holds scores (floating, at least 2 wide: classifier logits,
  a language model's per-token logits), the share of rows whose argmax agrees with eager PyTorch
  (top-1 agreement per sample, per-token argmax agreement per position), at least
  ``argmax_agreement``. A row whose top two eager scores are closer than twice the error the budget
  allows there (``relative_error`` times the row's largest |score|) counts as agreeing whichever it
  picks: it is a near-tie, not a quantization failure.

The row keeps EG401's atol/rtol statistics for reference; ``passed`` is the budget's verdict, and a
failure is EG406 naming the budget it broke. Static quantization (calibrated activations) and
ranking layers by the error they add are not implemented yet.
"""
from __future__ import annotations

import math

import torch

NAME = "ort-int8"
#: The budget each output of the int8 model is held to (see the module doc).
BUDGET = {"relative_error": 0.05, "argmax_agreement": 0.9}


CPU_ONLY = "ort-int8 runs on ONNX Runtime's CPU provider only (no CUDA variant)"


def unavailable_reason(name: str, device: str = "cpu") -> str | None:
    return CPU_ONLY if name == NAME and device != "cpu" else None


def build(flat, spec, onnx_path, workdir, device):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from evalguard.checks.onnx import runtime as onnx_runtime
    from evalguard.checks.onnx.console import quiet

    if onnx_path is None:
        raise RuntimeError("no ONNX file to quantize (the export failed or was not requested)")
    if device != "cpu":
        raise RuntimeError("ort-int8 runs on the CPU provider only")
    quantized = f"{workdir}/model-int8.onnx"
    with quiet():
        quantize_dynamic(onnx_path, quantized, weight_type=QuantType.QInt8)
    session = onnx_runtime.session(quantized, label=" (int8)")

    def run(tensors):
        feed = onnx_runtime.feeds(session, spec.names, tensors)
        return [torch.from_numpy(a) for a in onnx_runtime.run(session, feed)]
    notes = [f"quantize_dynamic(weight_type=QInt8) of the exported file; judged against the quantization budget "
             f"{BUDGET} (relative L2 error per output, argmax agreement over the last dimension), not fp32 tolerances"]
    return run, None, notes


def judge(row: dict, actual: torch.Tensor, expected: torch.Tensor) -> dict:
    """``row`` (an EG401-style parity row) with the budget's verdict in ``passed``."""
    if row.get("shape_mismatch"):
        return row
    a, e = actual.detach().double(), expected.detach().double()
    norm = float(e.norm())
    relative = float((a - e).norm()) / norm if norm > 0 else float((a - e).norm())
    verdict = {"quantization_budget": dict(BUDGET), "relative_error": round(relative, 6)}
    broken = []
    if not math.isfinite(relative) or relative > BUDGET["relative_error"]:   # NaN never passes
        broken.append(f"relative error {relative:.3g} > budget {BUDGET['relative_error']}")
    if expected.is_floating_point() and expected.dim() >= 2 and expected.shape[-1] >= 2:
        agreement = argmax_agreement(a, e)
        verdict["argmax_agreement"] = round(agreement, 6)
        if agreement < BUDGET["argmax_agreement"]:
            broken.append(f"argmax agreement {agreement:.1%} < budget {BUDGET['argmax_agreement']:.0%}")
    verdict["passed"] = not broken
    if broken:
        verdict["budget_failure"] = "int8 " + " and ".join(broken)
    return {**row, **verdict}


def argmax_agreement(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Share of rows (all dims but the last) whose argmax agrees, near-ties counted as agreeing."""
    a = actual.reshape(-1, actual.shape[-1])
    e = expected.reshape(-1, expected.shape[-1])
    same = a.argmax(-1) == e.argmax(-1)
    top2 = e.topk(2, dim=-1).values
    margin = top2[:, 0] - top2[:, 1]
    allowed = BUDGET["relative_error"] * e.abs().amax(-1)   # the error the budget allows in that row
    tie = margin <= 2 * allowed        # so close that an in-budget error may reorder the two best scores
    return float((same | tie).double().mean())
