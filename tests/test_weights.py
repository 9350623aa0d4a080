"""EG208 weights-not-loaded: every format that loads a state_dict into an architecture says when
the two do not match (missing tensors keep their random values; extra tensors are dropped)."""
import json
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

FACTORY = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.body(x))


    class TiedLM(nn.Module):
        """An output layer that shares the input embedding (as GPT-2's lm_head does)."""

        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 8)
            self.head = nn.Linear(8, 10, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, ids):
            return self.head(self.embed(ids))


    def build():
        torch.manual_seed(0)
        return Net().eval()


    def build_tied():
        torch.manual_seed(0)
        return TiedLM().eval()
''')


@pytest.fixture
def factory(tmp_path) -> Path:
    path = tmp_path / "arch.py"
    path.write_text(FACTORY)
    return path


def _net_state(factory: Path) -> dict:
    import runpy

    return runpy.run_path(str(factory))["build"]().state_dict()


def audit(run_cli, *args) -> tuple[dict, dict]:
    code, out, err = run_cli("check", *map(str, args), "--no-onnx", "--format", "json")
    assert code in (0, 1), err
    report = json.loads(out)
    (target,) = report["targets"]
    return target, [f for f in report["findings"] if f["rule"] == "EG208"]


def test_state_dict_missing_a_tensor_names_it_with_counts(run_cli, tmp_path, factory):
    state = _net_state(factory)
    del state["head.weight"]
    torch.save(state, tmp_path / "w.pt")
    target, found = audit(run_cli, tmp_path / "w.pt", "--model", f"{factory}:build", "--input-shape", "2x4")
    assert target["coverage"]["EG208"]["status"] == "failed"
    (finding,) = found
    assert finding["severity"] == "error"
    assert finding["evidence"]["missing"] == ["head.weight"]
    assert finding["evidence"]["missing_count"] == 1
    assert finding["evidence"]["expected"] == len(_net_state(factory))
    assert "head.weight" in finding["message"] and "1 of the" in finding["message"]


def test_checkpoint_with_extra_tensors_reports_them(run_cli, tmp_path, factory):
    state = _net_state(factory)
    state["ema.head.weight"] = torch.zeros(2, 8)
    state["old_fc.bias"] = torch.zeros(2)
    torch.save({"epoch": 3, "model": state}, tmp_path / "ckpt.pt")
    _, found = audit(run_cli, tmp_path / "ckpt.pt", "--model", f"{factory}:build", "--input-shape", "2x4")
    (finding,) = found
    assert finding["evidence"]["unexpected_count"] == 2
    assert finding["evidence"]["missing_count"] == 0
    assert set(finding["evidence"]["unexpected"]) == {"ema.head.weight", "old_fc.bias"}
    assert "not used by the architecture" in finding["message"]


def test_complete_state_dict_passes_and_prefixes_are_not_reported(run_cli, tmp_path, factory):
    state = {f"module.{k}": v for k, v in _net_state(factory).items()}   # saved from DDP
    torch.save(state, tmp_path / "ddp.pt")
    target, found = audit(run_cli, tmp_path / "ddp.pt", "--model", f"{factory}:build", "--input-shape", "2x4")
    assert found == []
    assert target["coverage"]["EG208"]["status"] == "passed"


def test_tied_weights_left_out_of_the_file_are_not_missing(run_cli, tmp_path, factory):
    import runpy

    state = runpy.run_path(str(factory))["build_tied"]().state_dict()
    del state["head.weight"]          # save_pretrained-style: the tied copy is not written
    torch.save(state, tmp_path / "lm.pt")
    target, found = audit(run_cli, tmp_path / "lm.pt", "--model", f"{factory}:build_tied",
                          "--input-shape", "2x3", "--input-dtype", "int64")
    assert found == []
    assert target["coverage"]["EG208"]["status"] == "passed"


def test_safetensors_and_lightning_are_judged_too(run_cli, tmp_path, factory):
    from safetensors.torch import save_file

    state = _net_state(factory)
    partial = {k: v for k, v in state.items() if not k.startswith("head.")}
    save_file(partial, tmp_path / "w.safetensors")
    _, found = audit(run_cli, tmp_path / "w.safetensors", "--model", f"{factory}:build", "--input-shape", "2x4")
    assert found and found[0]["evidence"]["missing_count"] == len(state) - len(partial) == 2
    assert found[0]["evidence"]["expected"] == len(state)

    lightning = {"state_dict": {f"model.{k}": v for k, v in partial.items()}, "optimizer_states": [],
                 "pytorch-lightning_version": "2.4.0", "epoch": 1}
    torch.save(lightning, tmp_path / "last.ckpt")
    _, found = audit(run_cli, tmp_path / "last.ckpt", "--model", f"{factory}:build", "--input-shape", "2x4")
    assert found and found[0]["evidence"]["missing"] == ["head.bias", "head.weight"]


def test_a_file_with_its_own_module_is_not_applicable(run_cli, tmp_path):
    torch.save(nn.Sequential(nn.Linear(4, 2)).eval(), tmp_path / "full.pt")
    target, found = audit(run_cli, tmp_path / "full.pt", "--input-shape", "2x4")
    assert found == []
    assert target["coverage"]["EG208"]["status"] == "not-applicable"
    assert "own weights" in target["coverage"]["EG208"]["reason"]


def test_a_factory_alone_is_not_applicable(run_cli, factory):
    target, found = audit(run_cli, "--model", f"{factory}:build", "--input-shape", "2x4")
    assert found == []
    assert target["coverage"]["EG208"]["status"] == "not-applicable"
