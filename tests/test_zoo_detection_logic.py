"""Detection support without torchvision (default lane): matching boxes (checks/onnx/detection.py)
and a toy detector taking a list of images, audited through the CLI (input builder, EG104 on
list-of-images inputs with per-image dict outputs, ONNX parity by matched boxes)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from evalguard.checks.onnx import detection

BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0], [5.0, 30.0, 15.0, 45.0]])


def dets(boxes, scores, labels=None):
    return {"boxes": boxes, "scores": torch.tensor(scores),
            "labels": torch.tensor(labels if labels is not None else [1] * len(scores))}


def test_same_detections_in_another_order_match():
    order = [2, 0, 1]
    a = dets(BOXES, [0.9, 0.8, 0.7])
    b = dets(BOXES[order], [0.7, 0.9, 0.8])
    diff = detection.compare("img", a, b, 1e-4, 1e-3)
    assert diff.passed and diff.matched == 3


def test_a_moved_box_or_a_changed_score_differs():
    moved = BOXES.clone()
    moved[1] += 0.5
    assert not detection.compare("img", dets(moved, [0.9, 0.8, 0.7]), dets(BOXES, [0.9, 0.8, 0.7]), 1e-4, 1e-3).passed
    assert not detection.compare("img", dets(BOXES, [0.9, 0.6, 0.7]), dets(BOXES, [0.9, 0.8, 0.7]), 1e-4, 1e-3).passed


def test_an_extra_confident_detection_differs_but_one_at_the_cut_off_does_not():
    base = dets(BOXES[:2], [0.9, 0.8])
    extra_confident = dets(BOXES, [0.9, 0.8, 0.95])
    at_cut_off = dets(BOXES, [0.9, 0.8, 0.80004])
    assert detection.compare("img", extra_confident, base, 1e-4, 1e-3).unexplained == 1
    diff = detection.compare("img", at_cut_off, base, 1e-4, 1e-3)
    assert diff.passed and diff.tied == 1


def test_two_sides_keeping_different_boxes_of_equal_score_is_a_tie():
    low = torch.tensor([[50.0, 50.0, 60.0, 60.0]])
    # box 1 on one side, box 2 on the other, at a score no other detection has: a real difference
    a = dets(torch.cat([BOXES[[0, 1]], low]), [0.9, 0.5, 0.1])
    b = dets(torch.cat([BOXES[[0, 2]], low]), [0.9, 0.5, 0.1])
    assert detection.compare("img", a, b, 1e-4, 1e-3).unexplained == 2
    # the same when 0.5 ties with another detection on each side: which one is kept is arbitrary
    a = dets(torch.cat([BOXES[[0, 1]], low, low + 100]), [0.9, 0.5, 0.5, 0.1])
    b = dets(torch.cat([BOXES[[0, 2]], low, low + 100]), [0.9, 0.5, 0.5, 0.1])
    diff = detection.compare("img", a, b, 1e-4, 1e-3)
    assert diff.passed and diff.tied == 2
    # a box missing at the lowest score is the cut-off (top-k, score threshold): tolerated
    assert detection.compare("img", dets(BOXES, [0.9, 0.8, 0.7]), dets(BOXES[:2], [0.9, 0.8]), 1e-4, 1e-3).passed is False
    assert detection.compare("img", dets(BOXES, [0.9, 0.8, 0.8]), dets(BOXES[:2], [0.9, 0.8]), 1e-4, 1e-3).passed


def test_different_labels_do_not_match():
    a = dets(BOXES, [0.9, 0.8, 0.7], [1, 1, 2])
    b = dets(BOXES, [0.9, 0.8, 0.7], [1, 1, 1])
    assert detection.compare("img", a, b, 1e-4, 1e-3).matched == 2


# --- a toy detector through the CLI ----------------------------------------------------------------

class GeneralizedRCNNTransform(nn.Module):
    """Named like torchvision's transform: what the input builder looks for."""


class ToyDetector(nn.Module):
    """A list of images -> per image, 4 fixed anchor boxes shifted by a conv's response."""

    def __init__(self, batch_statistics: bool = False):
        super().__init__()
        self.transform = GeneralizedRCNNTransform()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, track_running_stats=not
                                                                                   batch_statistics), nn.ReLU())
        self.score = nn.Linear(4, 4)
        self.register_buffer("anchors", torch.tensor([[0.0, 0.0, 8, 8], [8, 8, 16, 16], [0, 8, 8, 16], [8, 0, 16, 8]]))

    def forward(self, images):
        features = self.backbone(torch.stack(images)).mean(dim=(2, 3))
        scores = torch.sigmoid(self.score(features))
        return [{"boxes": self.anchors + s[:, None], "scores": s, "labels": torch.ones(4, dtype=torch.long)}
                for s in scores]


def toy():
    torch.manual_seed(0)
    return ToyDetector().eval()


def toy_batch_statistics():
    torch.manual_seed(0)
    return ToyDetector(batch_statistics=True).eval()


def audit(run_cli, *args):
    code, out, err = run_cli("check", *args, "--format", "json")
    return code, (json.loads(out) if out.strip() else {}), err


def test_toy_detector_gets_a_list_of_images_and_every_dynamic_rule_runs(run_cli):
    code, report, err = audit(run_cli, "--model", f"{__file__}:toy", "--select", "EG1,EG4")
    assert code == 0, err
    [target] = report["targets"]
    assert "a list of 2 images" in target["facts"]["inputs"]["source"]
    assert {rule: run["status"] for rule, run in target["coverage"].items()
            if rule in ("EG101", "EG104", "EG401")} == {"EG101": "passed", "EG104": "passed", "EG401": "passed"}
    assert target["facts"]["eval_mode"]["paired"]["batch_probe"] == {"batch": 2, "rows": [1], "companions": 0}
    assert [row["matched"] for row in target["facts"]["onnx"]["parity"]] == [4, 4]


def test_toy_detector_using_batch_statistics_is_eg104(run_cli):
    code, report, err = audit(run_cli, "--model", f"{__file__}:toy_batch_statistics", "--select", "EG104")
    assert code == 1, err
    [finding] = report["findings"]
    assert finding["rule"] == "EG104"
    assert finding["location"]["module"].startswith("backbone")


@pytest.mark.parametrize("name", ["toy"])
def test_stale_toy_detector_onnx_is_eg401(name, run_cli, tmp_path):
    code, _, err = audit(run_cli, "--model", f"{__file__}:{name}", "--select", "EG4", "--keep-onnx", tmp_path)
    assert code == 0, err
    [kept] = list(tmp_path.glob("*.onnx"))
    code, report, err = audit(run_cli, "--model", f"{__file__}:toy_batch_statistics", "--select", "EG401",
                              "--onnx", kept)
    assert code == 1, err
    assert [f["rule"] for f in report["findings"]] == ["EG401"]
