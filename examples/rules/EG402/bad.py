"""EG402 bad: `torch.cumprod` has no ONNX translation in either exporter (TorchScript: no
symbolic for aten::cumprod; dynamo: no ONNX function for prims.prod), so the model cannot be
exported at all."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x8",)
EXPECTED_RULES = ("EG402",)
ONNX = True


class SurvivalHead(nn.Module):
    """P(still alive after step k) = product of the per-step survival probabilities."""

    def __init__(self):
        super().__init__()
        self.hazard = nn.Linear(8, 6)

    def forward(self, x):
        return torch.cumprod(torch.sigmoid(self.hazard(x)), dim=-1)


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return SurvivalHead().eval()
