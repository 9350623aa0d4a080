"""EG104 good: LayerNorm normalises each sample on its own, whatever else is in the batch."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x8",)
EXPECTED_RULES = ()


def build_model() -> nn.Module:
    torch.manual_seed(0)  # fixed weights: two audits report the same numbers
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 4))
    return model.eval()
