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


# ---------------------------------------------------------------- Hugging Face folders
def _vit():
    from transformers import ViTConfig, ViTModel

    return ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                              image_size=32, patch_size=8))


def _swin():
    from transformers import SwinConfig, SwinModel

    return SwinModel(SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                                window_size=4))


def _bert_mlm():
    # the MLM decoder is tied to the embeddings
    from transformers import BertConfig, BertForMaskedLM

    return BertForMaskedLM(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=37))


HF_MODELS = {"vit": _vit, "swin": _swin, "bert": _bert_mlm}


def _saved(tmp_path: Path, name: str, edit=None):
    torch.manual_seed(0)
    model = HF_MODELS[name]().eval()
    if edit is not None:
        edit(model)
    model.save_pretrained(tmp_path / name)
    return model, tmp_path / name


@pytest.mark.parametrize("name", sorted(HF_MODELS))
def test_save_pretrained_folders_load_every_tensor(tmp_path, name):
    from evalguard.loading import load_target
    from evalguard.subject import AuditOptions

    model, folder = _saved(tmp_path, name)
    subject = load_target(str(folder), AuditOptions(selected=frozenset({"EG208"})))
    weights = subject.load.weights
    assert (weights.missing_count, weights.unexpected_count) == (0, 0)
    assert weights.loaded == weights.expected == len(model.state_dict())
    loaded = subject.model.state_dict()
    for key, value in model.state_dict().items():     # the saved values, not fresh random ones
        assert torch.equal(loaded[key], value), key


def test_vit_keys_renamed_by_transformers_are_counted(tmp_path):
    from safetensors import safe_open

    from evalguard.loading import load_target
    from evalguard.subject import AuditOptions

    model, folder = _saved(tmp_path, "vit")
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        saved_keys = set(handle.keys())
    renamed = len(saved_keys - set(model.state_dict()))
    assert renamed > 0, "this transformers saves ViT under its own module names; the test needs legacy names"
    subject = load_target(str(folder), AuditOptions(selected=frozenset({"EG208"})))
    assert subject.load.weights.renamed == renamed


@pytest.mark.parametrize("name", sorted(HF_MODELS))
def test_save_pretrained_folder_passes_eg208(run_cli, tmp_path, name):
    _, folder = _saved(tmp_path, name)
    target, found = audit(run_cli, folder, "--select", "EG208,EG207")
    assert found == []
    assert target["coverage"]["EG208"]["status"] == "passed"


def test_nan_in_an_encoder_weight_of_a_vit_folder_is_eg207(run_cli, tmp_path):
    def plant(model):
        name = next(k for k in model.state_dict() if ".0." in k and k.endswith("weight") and "norm" not in k)
        with torch.no_grad():
            model.get_parameter(name)[0, 0] = float("nan")

    _, folder = _saved(tmp_path, "vit", plant)
    code, out, err = run_cli("check", folder, "--select", "EG207,EG208", "--format", "json")
    report = json.loads(out)
    assert code == 1, err
    assert [f["rule"] for f in report["findings"]] == ["EG207"]


def test_a_tensor_removed_from_a_bert_folder_is_eg208_naming_it(run_cli, tmp_path):
    from safetensors.torch import load_file, save_file

    _, folder = _saved(tmp_path, "bert")
    tensors = load_file(str(folder / "model.safetensors"))
    removed = "bert.encoder.layer.1.output.dense.weight"
    del tensors[removed]
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    target, found = audit(run_cli, folder, "--select", "EG208")
    (finding,) = found
    assert finding["evidence"]["missing"] == [removed]
    assert removed in finding["message"]
    assert target["coverage"]["EG208"]["status"] == "failed"


def test_legacy_named_pytorch_model_bin_is_scanned_then_renamed(tmp_path):
    from safetensors.torch import load_file

    from evalguard.loading import load_target
    from evalguard.subject import AuditOptions

    model, folder = _saved(tmp_path, "vit")
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    subject = load_target(str(folder), AuditOptions(selected=frozenset({"EG208"})))
    assert subject.load.weights.missing_count == 0 and subject.load.weights.renamed > 0
    assert all(torch.equal(subject.model.state_dict()[k], v) for k, v in model.state_dict().items())


VIT_FACTORY = textwrap.dedent('''
    import torch
    from transformers import ViTConfig, ViTModel


    def build():
        torch.manual_seed(5)   # different random weights from the saved ones
        return ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=37, image_size=32, patch_size=8)).eval()
''')


def test_transformers_factory_takes_a_legacy_named_checkpoint_through_transformers(tmp_path):
    from safetensors.torch import load_file

    from evalguard.loading import load_target
    from evalguard.subject import AuditOptions

    model, folder = _saved(tmp_path, "vit")
    state = load_file(str(folder / "model.safetensors"))
    torch.save({"epoch": 1, "model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ckpt.pt")
    (tmp_path / "vit_factory.py").write_text(VIT_FACTORY)
    options = AuditOptions(selected=frozenset({"EG208"}), model_factory=f"{tmp_path / 'vit_factory.py'}:build")
    subject = load_target(str(tmp_path / "ckpt.pt"), options)
    weights = subject.load.weights
    assert (weights.missing_count, weights.unexpected_count) == (0, 0)
    assert weights.renamed > 0 and weights.stripped_prefix == "module."
    assert all(torch.equal(subject.model.state_dict()[k], v) for k, v in model.state_dict().items())
