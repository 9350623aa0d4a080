"""EG202 good: the activation first, Dropout after it."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x8",)
EXPECTED_RULES = ()


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), nn.GELU(), nn.Dropout(0.1),
        nn.Linear(16, 16), nn.GELU(),
        nn.Linear(16, 4),
    ).eval()
