"""EG102 bad: served in training mode, so the Dropout draws a new mask on every request.

The same input gives a different answer each time. EG101 fires too: the cause of the
nondeterminism is the Dropout left in training mode.
"""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x8",)
EXPECTED_RULES = ("EG101", "EG102")


def build_model() -> nn.Module:
    torch.manual_seed(0)  # fixed weights: two audits report the same numbers
    return nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(16, 16), nn.ReLU(),
        nn.Linear(16, 4),
    )
