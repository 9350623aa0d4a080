"""EG102 good: the same model in eval mode answers the same input the same way every time."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x8",)
EXPECTED_RULES = ()


def build_model() -> nn.Module:
    torch.manual_seed(0)  # fixed weights: two audits report the same numbers
    model = nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(16, 16), nn.ReLU(),
        nn.Linear(16, 4),
    )
    return model.eval()
