"""EG101 bad: a trained BatchNorm model served without model.eval().

In training mode BatchNorm normalises each request batch with that batch's own statistics
(and keeps moving its running averages) instead of using the statistics learned in training.
"""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x8",)
EXPECTED_RULES = ("EG101",)


def build_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        model(torch.randn(32, 8))  # stands in for training: the running statistics are learned
    return model  # still in training mode
