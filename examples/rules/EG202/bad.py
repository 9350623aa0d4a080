"""EG202 bad: Dropout before GELU. In training GELU sees inputs scaled by 1/(1-p) or zeroed, so
its expected output differs from what it computes at inference."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x8",)
EXPECTED_RULES = ("EG202",)


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), nn.Dropout(0.1), nn.GELU(),
        nn.Linear(16, 16), nn.GELU(),
        nn.Linear(16, 4),
    ).eval()
