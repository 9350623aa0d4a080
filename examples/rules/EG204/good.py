"""EG204 good: nn.Dropout2d drops whole feature maps (channels) instead of single elements."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x3x8x8",)
EXPECTED_RULES = ()


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.1),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).eval()
