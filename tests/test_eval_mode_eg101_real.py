"""EG101 on real vision and multimodal families left in training mode (tiny configs, random
weights): the modules in training mode are named, grouped by type, in the finding's location
and message, in every report format; and EG101 says how much the mode changed the outputs."""
from __future__ import annotations

import json

import pytest
import torch

from evalguard.api import audit
from evalguard.reporters import render

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.realmodel


def resnet():
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    return transformers.ResNetForImageClassification(config)


def regnet():
    config = transformers.RegNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], groups_width=8,
                                       num_labels=3)
    return transformers.RegNetForImageClassification(config)


def pixels():
    return {"pixel_values": torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))}


@pytest.mark.parametrize("build, first, type_name", [
    (resnet, "resnet.embedder.embedder.normalization", "BatchNorm2d"),
    (regnet, "regnet.embedder.embedder.normalization", "BatchNorm2d"),
])
def test_batchnorm_only_model_in_training_mode_names_its_modules_everywhere(build, first, type_name):
    torch.manual_seed(0)
    model = build()
    assert model.training
    report = audit(model, pixels(), select=["EG101"])
    [finding] = report.findings
    assert finding.rule == "EG101"
    assert finding.location.module == first
    assert f"{type_name} x" in finding.message and first in finding.message
    assert finding.evidence["by_type"][type_name][0] == first
    assert set(finding.evidence["by_type"]) == {type_name}   # only BatchNorm: nothing else differs
    text = render(report, "text")
    assert first in text
    data = json.loads(render(report, "json"))
    [listed] = [f for f in data["findings"] if f["rule"] == "EG101"]
    assert listed["location"]["module"] == first
    assert first in listed["message"]
    assert first in render(report, "html")


def test_bit_identical_train_and_eval_outputs_are_said_so():
    """CLIP with every dropout at 0 only *reads* self.training: EG101 says what differs and that
    it changed nothing on the example inputs, instead of claiming a behaviour difference."""
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 50, "max_position_embeddings": 16},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 16, "patch_size": 8},
        projection_dim=8)
    model = transformers.CLIPModel(config)
    inputs = {"input_ids": torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(0)),
              "pixel_values": torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))}
    report = audit(model, inputs)
    eg101 = [f for f in report.findings if f.rule == "EG101"]
    assert [f.rule for f in report.findings] == ["EG101"]
    [finding] = eg101
    assert "whose forward reads self.training" in finding.message
    assert "bit-identical" in finding.message
    assert "behaviour differs" not in finding.message
    assert finding.evidence["train_eval_max_abs_diff"] == 0
    assert finding.location.module is not None


def test_measured_train_eval_difference_is_reported_for_batchnorm():
    torch.manual_seed(0)
    report = audit(resnet(), pixels())
    [finding] = [f for f in report.findings if f.rule == "EG101"]
    assert finding.evidence["train_eval_max_abs_diff"] > 0
    assert "differ from the eval-mode ones by up to" in finding.message
