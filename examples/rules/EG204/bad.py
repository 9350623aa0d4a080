"""EG204 bad: element-wise nn.Dropout on the 4-D output of a Conv2d. Neighbouring pixels are
strongly correlated, so dropping single elements regularises little."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x3x8x8",)
EXPECTED_RULES = ("EG204",)


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.1),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).eval()
