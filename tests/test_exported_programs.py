"""torch.export programs (.pt2) are audited for real: eval() works on the exported graph (its
dropout/batch-norm ops switch to inference form), so the dynamic rules and ONNX run on it."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 4))
    with torch.no_grad():          # real BatchNorm statistics, as a trained model has
        for _ in range(3):
            model(torch.randn(4, 3, 8, 8))
    return model


@pytest.fixture
def programs(tmp_path):
    model, x = small_cnn(), torch.randn(2, 3, 8, 8)
    torch.export.save(torch.export.export(model.train(), (x,)), tmp_path / "train.pt2")
    torch.export.save(torch.export.export(model.eval(), (x,)), tmp_path / "eval.pt2")
    return tmp_path


def test_training_mode_program_gives_eg101_and_no_eg900(run_cli, programs):
    code, out, err = run_cli("check", programs / "train.pt2", "--format", "json")
    report = json.loads(out)
    rules = {f["rule"] for f in report["findings"]}
    assert code == 1, err
    assert "EG101" in rules and "EG900" not in rules
    coverage = report["targets"][0]["coverage"]
    # eval() worked on the graph: the eval-mode rules and the ONNX comparison really ran
    assert coverage["EG103"]["status"] == "passed"
    assert coverage["EG401"]["status"] == "passed"


def test_eval_mode_program_has_nothing_at_error(run_cli, programs):
    code, out, err = run_cli("check", programs / "eval.pt2", "--format", "json")
    report = json.loads(out)
    assert code == 0, err
    assert [f for f in report["findings"] if f["severity"] == "error"] == []
    assert report["targets"][0]["coverage"]["EG401"]["status"] == "passed"


def test_eval_and_train_switch_the_graph_and_put_it_back(programs):
    from evalguard.loading.exported import switchable

    module = switchable(torch.export.load(str(programs / "train.pt2")).module())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        module.eval()
        assert torch.equal(module(x), module(x))            # dropout off, running statistics
        module.train()
        assert not torch.equal(module(x), module(x))        # as exported: dropout on again
