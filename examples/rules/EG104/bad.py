"""EG104 bad: BatchNorm without running statistics normalises with the batch's statistics
even in eval mode, so a sample's output depends on the other samples in its batch."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x8",)
EXPECTED_RULES = ("EG104",)


def build_model() -> nn.Module:
    torch.manual_seed(0)  # fixed weights: two audits report the same numbers
    model = nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16, track_running_stats=False), nn.ReLU(),
        nn.Linear(16, 4),
    )
    return model.eval()
