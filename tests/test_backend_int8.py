"""ort-int8 in the backend matrix: dynamic int8 quantization judged against its budget, not fp32
tolerances (EG406 names the budget it broke)."""
from __future__ import annotations

import json

import pytest
import torch

from evalguard.checks.onnx import backend_int8, backends

MODEL = """import torch
from torch import nn


def build_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    if OUTLIER:
        with torch.no_grad():
            model[0].weight[0, 0] = 100.0   # one weight sets the per-tensor int8 scale of the whole layer
    return model.eval()
"""


def audit(run_cli, tmp_path, outlier: bool):
    factory = tmp_path / "net.py"
    factory.write_text(MODEL.replace("OUTLIER", str(outlier)))
    code, out, err = run_cli("check", "--model", f"{factory}:build_model", "--input-shape", "8x64",
                             "--backends", "onnxruntime,ort-int8", "--format", "json")
    assert code in (0, 1), err
    report = json.loads(out)
    rows = {b["backend"]: b for b in report["targets"][0]["facts"]["onnx"]["backends"]}
    return report, rows["ort-int8"]


def test_int8_within_its_budget_passes_although_fp32_tolerances_would_fail(run_cli, tmp_path):
    report, row = audit(run_cli, tmp_path, outlier=False)
    assert report["findings"] == [] and row["status"] == "matches"
    for r in row["rows"]:
        assert r["passed"] and r["relative_error"] <= backend_int8.BUDGET["relative_error"]
        assert r["mismatched_fraction"] > 0    # beyond EG401's float32 tolerances: int8 is judged otherwise
    assert {r["batch"] for r in row["rows"]} == {8, 7}


def test_an_outlier_weight_that_breaks_per_tensor_int8_is_eg406_naming_the_budget(run_cli, tmp_path):
    report, row = audit(run_cli, tmp_path, outlier=True)
    assert row["status"] == "differs"
    [finding] = [f for f in report["findings"] if f["rule"] == "EG406"]
    assert finding["evidence"]["backend"] == "ort-int8"
    assert "int8 relative error" in finding["message"] and "budget 0.05" in finding["message"]


def test_argmax_agreement_counts_near_ties_as_agreeing():
    expected = torch.tensor([[1.0, 0.0], [0.5, 0.49], [0.0, 1.0]])
    actual = torch.tensor([[0.0, 1.0], [0.48, 0.5], [0.0, 1.0]])   # row 0 flips clearly, row 1 is a near-tie
    assert backend_int8.argmax_agreement(actual, expected) == pytest.approx(2 / 3)


def test_cuda_variant_is_skipped_with_the_reason():
    [cpu, cuda] = backends.variants(["ort-int8"], "cuda")
    assert cpu.skip_reason is None and cuda.skip_reason == backend_int8.CPU_ONLY


def test_a_nan_output_never_passes_the_budget():
    expected = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    row = backend_int8.judge({"output": "y", "passed": False}, torch.tensor([[float("nan"), 0.0], [0.0, 1.0]]),
                             expected)
    assert row["passed"] is False and "relative error" in row["budget_failure"]
