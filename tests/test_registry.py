"""Mixed registries (issue 29 items 9, 10): which architecture each target gets, ONNX pairs.

One folder holds a Hugging Face folder (a tiny BERT built from its config), state_dicts of two
architectures and a ``net.pt`` next to its ``net.onnx``; one run with the mapping form of
``--model`` audits all of them.
"""
import json

import pytest

from evalguard.errors import UsageError
from evalguard.planning import factory_for, pair_onnx, parse_model_specs

ARCH = '''
import torch
from torch import nn


def build_mlp():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def build_cnn():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
'''


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """registry/{bert/, ckpts/mlp.pt, conv/cnn.pt, pair/net.pt, pair/net.onnx} and arch.py; cwd tmp_path."""
    import importlib.util

    import torch
    transformers = pytest.importorskip("transformers")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "arch.py").write_text(ARCH)
    spec = importlib.util.spec_from_file_location("_eg_registry_arch", tmp_path / "arch.py")
    arch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arch)
    root = tmp_path / "registry"
    for sub in ("ckpts", "conv", "pair"):
        (root / sub).mkdir(parents=True)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=32)
    transformers.BertModel(config).eval().save_pretrained(root / "bert")
    torch.save(arch.build_mlp().state_dict(), root / "ckpts" / "mlp.pt")
    cnn = arch.build_cnn()
    cnn.train()
    for _ in range(3):                       # BatchNorm statistics, as a trained model has
        cnn(torch.randn(4, 3, 16, 16))
    torch.save(cnn.state_dict(), root / "conv" / "cnn.pt")
    net = arch.build_mlp().eval()
    torch.save(net.state_dict(), root / "pair" / "net.pt")
    torch.onnx.export(net, (torch.randn(3, 8),), str(root / "pair" / "net.onnx"), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    monkeypatch.chdir(tmp_path)
    return root


def _targets(report) -> dict:
    return {t["path"]: t for t in report["targets"]}


MAPPED = ("--model", "registry/ckpts/*.pt=arch.py:build_mlp", "--model", "registry/conv/*=arch.py:build_cnn",
          "--model", "registry/pair/*.pt=arch.py:build_mlp")


def test_mixed_folder_audits_fully_in_one_run_with_the_mapping_form(run_cli, registry):
    code, out, err = run_cli("check", "registry", *MAPPED, "--format", "json", "--no-isolate")
    report = json.loads(out)
    targets = _targets(report)
    assert set(targets) == {"registry/bert", "registry/ckpts/mlp.pt", "registry/conv/cnn.pt",
                            "registry/pair/net.pt"}, err        # net.onnx is net.pt's, not a target
    assert {t["status"] for t in targets.values()} == {"audited"}, err
    assert code in (0, 1)
    facts = {path: t.get("facts", {}) for path, t in targets.items()}
    assert facts["registry/ckpts/mlp.pt"]["load"]["weights"]["architecture"] == "--model arch.py:build_mlp"
    assert facts["registry/conv/cnn.pt"]["load"]["weights"]["architecture"] == "--model arch.py:build_cnn"
    assert "transformers" in facts["registry/bert"]["load"]["model_class"]   # its own config, no --model
    paired = facts["registry/pair/net.pt"]
    assert ["Paired ONNX file", "registry/pair/net.onnx"] in [list(d) for d in paired["load"]["details"]]
    assert paired["onnx"]["file"] == "registry/pair/net.onnx"       # parity against the user's file
    coverage = targets["registry/pair/net.pt"]["coverage"]
    assert coverage["EG401"]["status"] == "passed" and coverage["EG402"]["status"] == "not-applicable"


def test_plain_model_never_reaches_hf_folders_but_cannot_build_two_architectures(run_cli, registry):
    code, out, err = run_cli("check", "registry", "--model", "arch.py:build_mlp", "--format", "json",
                             "--no-isolate", "--no-onnx")
    targets = _targets(json.loads(out))
    assert targets["registry/bert"]["status"] == "audited"            # built from its config.json
    assert targets["registry/ckpts/mlp.pt"]["status"] == "audited"
    assert targets["registry/conv/cnn.pt"]["status"] == "error"       # a CNN's weights, an MLP's keys
    assert code == 2


def test_model_in_config_is_a_list_of_mappings_relative_to_the_config(run_cli, registry):
    (registry.parent / "pyproject.toml").write_text(
        '[tool.evalguard]\nmodel = ["registry/conv/*.pt=arch.py:build_cnn", "arch.py:build_mlp"]\n')
    code, out, err = run_cli("check", "registry/conv", "registry/ckpts", "--format", "json", "--no-isolate",
                             "--no-onnx")
    targets = _targets(json.loads(out))
    assert targets["registry/conv/cnn.pt"]["facts"]["load"]["weights"]["architecture"] == "--model arch.py:build_cnn"
    assert targets["registry/ckpts/mlp.pt"]["facts"]["load"]["weights"]["architecture"] == "--model arch.py:build_mlp"
    assert code in (0, 1), err


def test_model_spec_parsing(tmp_path):
    plain, mapping = parse_model_specs(["a/*.pt=m:f", "m:g", "b/**=n:h"], tmp_path)
    assert plain == "m:g"
    assert mapping == ((str(tmp_path / "a/*.pt"), "m:f"), (str(tmp_path / "b/**"), "n:h"))
    with pytest.raises(UsageError, match="only one plain"):
        parse_model_specs(["m:f", "m:g"], tmp_path)
    with pytest.raises(UsageError, match="GLOB=MODULE:CALLABLE"):
        parse_model_specs(["a/*.pt=nocolon"], tmp_path)


def test_first_matching_glob_wins_and_plain_is_the_fallback(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "model.safetensors").write_bytes(b"")
    _, mapping = parse_model_specs(["x/*.pt=first:f", "x/a*=second:f"], tmp_path)
    assert factory_for(str(tmp_path / "x" / "a.pt"), "plain:f", mapping) == "first:f"
    assert factory_for(str(tmp_path / "x" / "a.ckpt"), "plain:f", mapping) == "second:f"
    assert factory_for(str(tmp_path / "y.pt"), "plain:f", mapping) == "plain:f"
    assert factory_for(str(tmp_path / "hf"), "plain:f", mapping) is None          # HF folder
    assert factory_for(str(tmp_path / "x" / "a.onnx"), "plain:f", mapping) is None


def test_onnx_pairs_need_one_model_of_the_same_stem_in_the_same_folder():
    found = ["d/a.onnx", "d/a.pt", "d/b.onnx", "d/b.pt", "d/b.safetensors", "d/c.onnx", "e/a.onnx"]
    kept, pairs = pair_onnx(found)
    assert pairs == {"d/a.pt": "d/a.onnx"}
    assert kept == ["d/a.pt", "d/b.onnx", "d/b.pt", "d/b.safetensors", "d/c.onnx", "e/a.onnx"]


def test_an_onnx_named_on_the_command_line_stays_a_target(run_cli, registry):
    code, out, err = run_cli("check", "registry/pair/net.pt", "registry/pair/net.onnx", *MAPPED,
                             "--format", "json", "--no-isolate", "--no-onnx")
    assert set(_targets(json.loads(out))) == {"registry/pair/net.pt", "registry/pair/net.onnx"}
