"""Every supported format round-trips: saved with real torch/transformers APIs, loaded through
``load_target``, with the same outputs, the training flags as saved, and usable example inputs."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn

from evalguard.errors import RefusedTarget, TargetError
from evalguard.facts import to_json
from evalguard.loading import load_target
from evalguard.subject import AuditOptions

ARCH_SOURCE = textwrap.dedent("""
    import torch.nn as nn

    def build():
        return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))

    def build_wider():
        return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
""")


def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)  # make loaded-vs-initial values distinguishable
    return model.eval()


@pytest.fixture
def arch(tmp_path) -> str:
    (tmp_path / "arch.py").write_text(ARCH_SOURCE)
    return f"{tmp_path / 'arch.py'}:build"


def same_outputs(a: nn.Module, b: nn.Module, x=None) -> bool:
    x = torch.randn(4, 6) if x is None else x
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x))


def load(path, **options):
    return load_target(str(path), AuditOptions(**options))


# -- full modules --------------------------------------------------------------------------

def test_full_module_zip_keeps_training_flags_exactly(tmp_path):
    model = make_model()
    model[3].train()  # Dropout left in training mode inside an eval() model
    torch.save(model, tmp_path / "model.pt")
    subject = load(tmp_path / "model.pt")
    assert subject.kind == "full-module-pickle"
    assert [m.training for m in subject.model.modules()] == [m.training for m in model.modules()]
    assert subject.load.saved_training is False
    assert subject.load.file_size == (tmp_path / "model.pt").stat().st_size
    assert same_outputs(subject.model, model)


def test_full_module_in_training_mode_stays_in_training_mode(tmp_path):
    torch.save(make_model().train(), tmp_path / "model.pt")
    subject = load(tmp_path / "model.pt")
    assert subject.model.training and subject.load.saved_training is True


def test_full_module_zip_is_memory_mapped(tmp_path):
    torch.save(make_model(), tmp_path / "model.pt")
    subject = load(tmp_path / "model.pt")
    assert "memory-mapped" in subject.load.format


def test_transformer_layer_storing_an_activation_function_loads(tmp_path):
    # TransformerEncoderLayer keeps F.gelu (pickled as torch._C._nn.gelu) as an attribute.
    layer = nn.TransformerEncoderLayer(16, 2, 32, activation="gelu", batch_first=True).eval()
    torch.save(layer, tmp_path / "layer.pt")
    subject = load(tmp_path / "layer.pt", input_shapes=((2, 5, 16),))
    x = subject.inputs.args[0]
    with torch.no_grad():
        assert torch.allclose(subject.model(x), layer(x))


def test_legacy_format_state_dict_loads(tmp_path, arch):
    model = make_model()
    torch.save(model.state_dict(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    subject = load(tmp_path / "legacy.pt", model_factory=arch)
    assert subject.kind == "state-dict" and "legacy" in subject.load.format
    assert same_outputs(subject.model, model)


def test_legacy_format_full_module_gives_a_clear_error(tmp_path):
    torch.save(make_model(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(TargetError, match="legacy .*cannot be loaded weights-only"):
        load(tmp_path / "legacy.pt")


def test_old_style_weight_norm_and_spectral_norm_hooks_load(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weight_norm is deprecated, but old checkpoints have it
        model = nn.Sequential(nn.utils.weight_norm(nn.Linear(6, 8)), nn.utils.spectral_norm(nn.Linear(8, 3))).eval()
    torch.save(model, tmp_path / "model.pt")
    subject = load(tmp_path / "model.pt")
    assert same_outputs(subject.model, model)


def test_lightning_hyperparameters_namespace_and_timestamps_are_data(tmp_path, arch):
    import argparse
    import datetime

    model = make_model()
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "optimizer_states": [], "hyper_parameters": {"args": argparse.Namespace(lr=0.1, layers=2)},
                "saved_at": datetime.datetime(2024, 5, 1, 12, 0)}, tmp_path / "last.ckpt")
    subject = load(tmp_path / "last.ckpt", model_factory=arch)
    assert subject.kind == "lightning-checkpoint" and same_outputs(subject.model, model)


def test_numpy_metrics_in_a_checkpoint_are_data(tmp_path, arch, as_worker):
    model = make_model()
    torch.save({"model": model.state_dict(), "best_acc": np.float64(0.91), "hist": np.arange(3)},
               tmp_path / "ckpt.pt")
    subject = load(tmp_path / "ckpt.pt", model_factory=arch)
    assert subject.kind == "checkpoint" and same_outputs(subject.model, model)


# -- state dicts and checkpoints -------------------------------------------------------------

def test_state_dict_into_factory_architecture(tmp_path, arch):
    model = make_model()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    subject = load(tmp_path / "weights.pt", model_factory=arch)
    assert subject.kind == "state-dict"
    assert same_outputs(subject.model, model)
    assert subject.load.weights.loaded == len(model.state_dict())
    assert subject.load.weights.missing_count == 0 and subject.load.weights.unexpected_count == 0
    assert subject.load.mode_source == "--model factory"


def test_state_dict_without_model_asks_for_model(tmp_path):
    torch.save(make_model().state_dict(), tmp_path / "weights.pt")
    with pytest.raises(TargetError, match=r"is a state_dict; pass --model MODULE:CALLABLE"):
        load(tmp_path / "weights.pt")


@pytest.mark.parametrize("model_key, optim_key", [
    ("model_state_dict", "optimizer_state_dict"), ("model", "optimizer"), ("state_dict", "optimizer"),
    ("net", "optim"),
])
def test_checkpoint_layouts_with_adam_optimizer(tmp_path, arch, model_key, optim_key):
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.01)
    model(torch.randn(4, 6)).sum().backward()
    optimizer.step()
    torch.save({model_key: model.state_dict(), optim_key: optimizer.state_dict(), "epoch": 7}, tmp_path / "c.pt")
    subject = load(tmp_path / "c.pt", model_factory=arch)
    assert subject.kind == "checkpoint"
    assert same_outputs(subject.model, model)
    assert subject.optimizer_state["param_groups"][0]["weight_decay"] == 0.01
    assert subject.load.optimizer.name == "Adam" and dict(subject.load.details)["Epoch"] == "7"
    assert subject.load.optimizer.location == f"checkpoint[{optim_key!r}]"


def test_adamw_is_told_apart_from_adam(tmp_path, arch):
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), weight_decay=0.05)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "c.pt")
    assert load(tmp_path / "c.pt", model_factory=arch).load.optimizer.name == "AdamW"


def test_checkpoint_holding_a_full_module(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.save({"model": model, "optimizer": optimizer.state_dict()}, tmp_path / "c.pt")
    subject = load(tmp_path / "c.pt")
    assert subject.kind == "checkpoint" and subject.load.optimizer.name == "SGD"
    assert same_outputs(subject.model, model)


def test_lightning_checkpoint_strips_model_prefix(tmp_path, arch):
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), weight_decay=0.1)
    checkpoint = {
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "optimizer_states": [optimizer.state_dict()], "lr_schedulers": [],
    }
    torch.save(checkpoint, tmp_path / "last.ckpt")
    subject = load(tmp_path / "last.ckpt", model_factory=arch)
    assert subject.kind == "lightning-checkpoint"
    assert subject.load.weights.stripped_prefix == "model."
    assert subject.load.optimizer.location == "checkpoint['optimizer_states'][0]"
    assert subject.optimizer_state["param_groups"][0]["weight_decay"] == 0.1
    assert same_outputs(subject.model, model)


def test_ddp_module_prefix_is_stripped(tmp_path, arch):
    model = make_model()
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "ddp.pt")
    subject = load(tmp_path / "ddp.pt", model_factory=arch)
    assert subject.load.weights.stripped_prefix == "module." and same_outputs(subject.model, model)


def test_missing_and_unexpected_keys_are_recorded(tmp_path, arch):
    state = make_model().state_dict()
    del state["4.bias"]
    state["extra.weight"] = torch.ones(2)
    torch.save(state, tmp_path / "partial.pt")
    subject = load(tmp_path / "partial.pt", model_factory=arch)
    assert list(subject.load.weights.missing) == ["4.bias"]
    assert list(subject.load.weights.unexpected) == ["extra.weight"]
    assert "missing" in dict(subject.load.details)["Load warnings"]
    json.dumps(to_json(subject.load))  # reports serialise the facts


def test_no_matching_keys_is_a_target_error(tmp_path, arch):
    torch.save({"encoder.layer.weight": torch.ones(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(TargetError, match="none of the 1 keys .* match"):
        load(tmp_path / "other.pt", model_factory=arch)


def test_shape_mismatch_is_a_target_error(tmp_path, arch):
    torch.save(make_model().state_dict(), tmp_path / "weights.pt")
    wider = arch.replace(":build", ":build_wider")
    with pytest.raises(TargetError, match=r"shape\(s\) differ.*0.weight: checkpoint \[8, 6\] vs model \[16, 6\]"):
        load(tmp_path / "weights.pt", model_factory=wider)


def test_dtype_difference_is_copied_into_the_model_dtype(tmp_path, arch):
    model = make_model()
    torch.save({k: v.double() if v.is_floating_point() else v for k, v in model.state_dict().items()},
               tmp_path / "double.pt")
    subject = load(tmp_path / "double.pt", model_factory=arch)
    assert subject.model[0].weight.dtype == torch.float32
    assert same_outputs(subject.model, model)


# -- TorchScript, torch.export, safetensors, ONNX ------------------------------------------

def test_torchscript_script_and_trace(tmp_path, as_worker):
    model = make_model()
    torch.jit.script(model).save(str(tmp_path / "scripted.pt"))
    torch.jit.trace(model, torch.randn(4, 6)).save(str(tmp_path / "traced.pt"))
    for name in ("scripted.pt", "traced.pt"):
        subject = load(tmp_path / name)
        assert subject.kind == "torchscript"
        assert subject.load.saved_training is False
        assert subject.inputs.args[0].shape == (2, 6)  # inferred from the scripted first Linear
        assert same_outputs(subject.model, model)


def test_exported_program_uses_saved_example_inputs(tmp_path, as_worker):
    model = make_model()
    example = torch.randn(5, 6)
    torch.export.save(torch.export.export(model, (example,)), str(tmp_path / "model.pt2"))
    subject = load(tmp_path / "model.pt2")
    assert subject.kind == "exported-program"
    assert subject.load.saved_training is False
    assert torch.equal(subject.inputs.args[0], example)
    with torch.no_grad():
        assert torch.allclose(subject.model(example), model(example))


def test_exported_program_of_a_training_model_reports_training_ops(tmp_path, as_worker):
    model = make_model().train()
    torch.export.save(torch.export.export(model, (torch.randn(5, 6),)), str(tmp_path / "model.pt2"))
    subject = load(tmp_path / "model.pt2")
    assert subject.load.saved_training is True
    assert "dropout" in dict(subject.load.details)["Training-mode ops in the graph"]


def test_exported_program_input_shape_flag_wins(tmp_path, as_worker):
    batch = torch.export.Dim("batch", min=2, max=32)
    program = torch.export.export(make_model(), (torch.randn(5, 6),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "model.pt2"))
    subject = load(tmp_path / "model.pt2", input_shapes=((3, 6),))
    assert subject.inputs.args[0].shape == (3, 6)


def test_safetensors_needs_model_and_round_trips(tmp_path, arch):
    from safetensors.torch import save_file

    model = make_model()
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    with pytest.raises(TargetError, match="safetensors file .*pass --model"):
        load(tmp_path / "model.safetensors")
    subject = load(tmp_path / "model.safetensors", model_factory=arch)
    assert subject.kind == "safetensors" and same_outputs(subject.model, model)


def test_onnx_file_static_subject_with_inputs_from_the_graph(tmp_path):
    model = make_model()
    torch.onnx.export(model, (torch.randn(3, 6),), str(tmp_path / "model.onnx"), dynamo=False,
                      input_names=["features"], dynamic_axes={"features": {0: "batch"}})
    subject = load(tmp_path / "model.onnx")
    assert subject.kind == "onnx" and subject.model is None
    assert subject.onnx_path == str(tmp_path / "model.onnx")
    assert subject.inputs.args[0].shape == (2, 6)  # dynamic batch -> 2
    assert dict(subject.load.details)["Graph inputs"] == "features: float32[2, 6]"


def test_onnx_content_is_recognised_without_the_extension(tmp_path):
    torch.onnx.export(make_model(), (torch.randn(3, 6),), str(tmp_path / "model.onnx"), dynamo=False)
    (tmp_path / "model.bin").write_bytes((tmp_path / "model.onnx").read_bytes())
    assert load(tmp_path / "model.bin").kind == "onnx"


# -- Hugging Face folders --------------------------------------------------------------------

@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_hf_style_folder_with_optimizer(tmp_path, arch, weights):
    model = make_model()
    folder = tmp_path / "checkpoint-500"
    folder.mkdir()
    if weights == "model.safetensors":
        from safetensors.torch import save_file

        save_file(model.state_dict(), str(folder / weights))
    else:
        torch.save(model.state_dict(), folder / weights)
    torch.save(torch.optim.AdamW(model.parameters()).state_dict(), folder / "optimizer.pt")
    subject = load(folder, model_factory=arch)
    assert subject.kind == "hf-folder"
    assert subject.load.optimizer.name == "AdamW" and subject.optimizer_state is not None
    assert same_outputs(subject.model, model)


def test_sharded_hf_folder(tmp_path, arch):
    from safetensors.torch import save_file

    state = make_model().state_dict()
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[:4], "model-00002-of-00002.safetensors": keys[4:]}
    for name, shard_keys in shards.items():
        save_file({k: state[k] for k in shard_keys}, str(tmp_path / name))
    weight_map = {k: name for name, shard_keys in shards.items() for k in shard_keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    subject = load(tmp_path, model_factory=arch)
    assert subject.kind == "hf-folder" and subject.load.weights.loaded == len(state)


def test_hf_folder_optimizer_payload_is_refused(tmp_path, arch):
    import os

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    torch.save(make_model().state_dict(), tmp_path / "pytorch_model.bin")
    torch.save({"state": {}, "param_groups": [], "x": Payload()}, tmp_path / "optimizer.pt")
    with pytest.raises(RefusedTarget):
        load(tmp_path, model_factory=arch)
    assert not (tmp_path / "pwned").exists()


# -- transformers -------------------------------------------------------------------------------

def tiny_bert_config():
    from transformers import BertConfig

    return BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64)


@pytest.mark.realmodel
def test_transformers_full_pickle_needs_trust_module(tmp_path, as_worker):
    from transformers import BertModel

    model = BertModel(tiny_bert_config()).eval()
    torch.save(model, tmp_path / "bert.pt")
    with pytest.raises(RefusedTarget) as refused:
        load(tmp_path / "bert.pt")
    assert [f.rule for f in refused.value.findings] == ["EG902"]
    assert "--trust-module transformers" in refused.value.findings[0].message

    subject = load(tmp_path / "bert.pt", trust_modules=("transformers",))
    assert type(subject.model).__name__ == "BertModel" and subject.load.saved_training is False
    ids = subject.inputs.kwargs["input_ids"]  # keyword inputs from the forward signature
    assert ids.dtype == torch.int64 and int(ids.max()) < 97
    with torch.no_grad():
        assert torch.allclose(subject.model(ids).last_hidden_state, model(ids).last_hidden_state)


@pytest.mark.realmodel
def test_transformers_save_pretrained_folder_builds_from_config(tmp_path):
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification(tiny_bert_config()).eval()
    model.save_pretrained(tmp_path / "bert")
    subject = load(tmp_path / "bert")
    assert subject.kind == "hf-folder"
    assert subject.load.weights.architecture == "transformers.BertForSequenceClassification from config.json"
    assert subject.load.saved_training is False
    assert subject.load.weights.missing_count == 0
    ids = subject.inputs.kwargs["input_ids"]
    with torch.no_grad():
        assert torch.allclose(subject.model(ids).logits, model(ids).logits, atol=1e-6)
