"""EG203 (info) bad: Dropout feeds the final Linear. Common and usually deliberate in
classifier heads; reported so that the choice is visible in review."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x8",)
EXPECTED_RULES = ("EG203",)


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)).eval()
