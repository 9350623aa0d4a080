"""EG206 good: the BatchNorm block keeps its dropout light (p <= 0.1)."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x3x8x8",)
EXPECTED_RULES = ()


def conv_block(cin: int, cout: int, p: float) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.Dropout2d(p))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        conv_block(3, 8, p=0.1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).eval()
