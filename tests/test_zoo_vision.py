"""The zoo lane (``pytest -m zoo``, run by ``.ci/zoo-lane`` on the newest torch with torchvision,
timm and transformers): models teams deploy, built with random weights from tiny configs (nothing
downloaded), audited through the CLI as a new user would (``--model FILE:FACTORY`` or a folder).

Clean models audit with no warning or error and no exit 2; planted bugs are found with the
module named. A random model stands in for a trained one only after a few training-mode passes
have given its BatchNorms statistics. Tests skip, saying so, where a package is missing (the
default lane has no torchvision or timm: the CUDA-only torchvision builds that pair with torch
2.13 do not import with its CPU build).
"""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.zoo
torch = pytest.importorskip("torch")


def _need(name: str):
    return pytest.importorskip(name, reason=f"{name} is not installed: the zoo lane (.ci/zoo-lane) installs it")


# --- factories (this file is also the --model module) ------------------------------------------

def _calibrate_detector(model):
    """BatchNorm statistics from two training passes (detection training needs targets)."""
    torch.manual_seed(0)
    model.train()
    images = [torch.rand(3, 160, 160) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 80.0, 90.0]]), "labels": torch.tensor([1])} for _ in images]
    with torch.no_grad():
        for _ in range(2):
            model(images, targets)
    return model


def _calibrate(model, shape=(4, 3, 32, 32)):
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(shape))
    return model.eval()


def ssdlite(train: bool = False):
    from torchvision.models import detection

    torch.manual_seed(0)
    model = detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    _calibrate_detector(model)
    return model if train else model.eval()


def ssdlite_forgot_eval():
    return ssdlite(train=True)


def fasterrcnn(retrained: bool = False):
    from torchvision.models import detection

    torch.manual_seed(0)
    model = detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3)
    _calibrate_detector(model)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():   # spread the random class scores (else every detection ties), as training would
        for layer in (model.roi_heads.box_predictor.cls_score, model.rpn.head.cls_logits):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.3)
        if retrained:       # the weights moved on after the ONNX file was exported
            model.roi_heads.box_predictor.cls_score.weight.mul_(1.5)
    return model.eval()


def fasterrcnn_retrained():
    return fasterrcnn(retrained=True)


def deeplab():
    from torchvision.models import segmentation

    torch.manual_seed(0)
    model = segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3,
                                                      aux_loss=False)
    return _calibrate(model, (2, 3, 64, 64))


def vit():
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                             embed_dim=32, num_heads=2, num_classes=3).eval()


def vit_forgot_eval():
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                             embed_dim=32, num_heads=2, num_classes=3, drop_rate=0.1)   # left in training mode


def efficientnet():
    import timm

    torch.manual_seed(0)
    return _calibrate(timm.create_model("efficientnet_b0", pretrained=False, num_classes=3))


def convnext():
    import timm

    torch.manual_seed(0)
    return timm.create_model("convnext_atto", pretrained=False, num_classes=3).eval()


# --- helpers -------------------------------------------------------------------------------------

def audit(run_cli, *args):
    code, out, err = run_cli("check", *args, "--format", "json")
    report = json.loads(out) if out.strip() else {}
    return code, report, err


def factory(name: str) -> str:
    return f"{__file__}:{name}"


def loud(report) -> list[str]:
    return [f"{f['rule']} {f['severity']} {f['location'].get('module')}: {f['message'][:200]}"
            for f in report.get("findings", []) if f["severity"] in ("warning", "error")]


def coverage(report) -> dict:
    [target] = report["targets"]
    return {rule: run["status"] for rule, run in target["coverage"].items()}


# --- detection and segmentation ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ssdlite", "fasterrcnn"])
def test_clean_detector_audits_with_eg101_eg104_and_onnx_parity_run(name, run_cli):
    _need("torchvision")
    code, report, err = audit(run_cli, "--model", factory(name))
    assert code == 0, err
    assert loud(report) == []
    ran = coverage(report)
    assert ran["EG101"] == ran["EG104"] == ran["EG401"] == "passed"
    [target] = report["targets"]
    assert "a list of 2 images" in target["facts"]["inputs"]["source"]
    parity = target["facts"]["onnx"]["parity"]
    assert [row["output"] for row in parity] == ["output[0]", "output[1]"]   # one row per image
    assert all(row["dtype"] == "detections" and row["matched"] > 0 for row in parity)
    assert "no batch axis" in target["coverage"]["EG404"]["reason"]


def test_detector_left_in_training_mode_is_eg101_and_says_training_needs_targets(run_cli):
    _need("torchvision")
    code, report, err = audit(run_cli, "--model", factory("ssdlite_forgot_eval"), "--no-onnx")
    assert code == 1, err                       # a finding, not an unauditable target
    eg101 = [f for f in report["findings"] if f["rule"] == "EG101"]
    assert eg101 and eg101[0]["location"]["module"].startswith("backbone.")
    [target] = report["targets"]
    assert "the training-mode forward needs targets" in target["coverage"]["EG102"]["reason"]
    assert target["coverage"]["EG104"]["status"] == "passed"   # the eval-mode passes still ran


def test_stale_detector_onnx_is_eg401_on_matched_boxes(run_cli, tmp_path):
    _need("torchvision")
    code, _, err = audit(run_cli, "--model", factory("fasterrcnn"), "--select", "EG4", "--keep-onnx", tmp_path)
    assert code == 0, err
    [kept] = list(tmp_path.glob("*.onnx"))
    code, report, err = audit(run_cli, "--model", factory("fasterrcnn_retrained"), "--select", "EG401",
                              "--onnx", kept)
    assert code == 1, err
    [finding] = [f for f in report["findings"] if f["rule"] == "EG401"]
    assert "detections matched" in finding["message"]
    assert "cannot load" not in finding["message"]


def test_deeplab_audits_and_its_dropout_before_batchnorm_is_the_only_warning(run_cli):
    """torchvision's DeepLabHead puts Dropout(0.5) in the ASPP projection, before the head's
    BatchNorm: a real variance-shift layout (EG201), not a false positive."""
    _need("torchvision")
    code, report, err = audit(run_cli, "--model", factory("deeplab"))
    assert code != 2, err
    assert [(f["rule"], f["location"]["module"]) for f in report["findings"]
            if f["severity"] in ("warning", "error")] == [("EG201", "classifier.0.project.3")]
    assert coverage(report)["EG401"] == "passed"


# --- timm ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["vit", "efficientnet", "convnext"])
def test_timm_model_audits_clean(name, run_cli):
    _need("timm")
    code, report, err = audit(run_cli, "--model", factory(name))
    assert code == 0, err
    assert loud(report) == []
    assert coverage(report)["EG401"] == "passed"


def test_timm_vit_forgotten_eval_names_the_dropout(run_cli):
    _need("timm")
    code, report, err = audit(run_cli, "--model", factory("vit_forgot_eval"), "--no-onnx")
    assert code == 1, err
    rules = {f["rule"]: f for f in report["findings"]}
    assert "EG101" in rules and "EG102" in rules
    assert "drop" in rules["EG102"]["location"]["module"]
