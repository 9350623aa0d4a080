"""EG203 good: the Dropout regularises a hidden layer; the output layer sees undropped features."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x8",)
EXPECTED_RULES = ()


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(16, 16), nn.ReLU(),
        nn.Linear(16, 3),
    ).eval()
