"""EG402 good: the same product computed as exp(cumsum(log p)), which exports (CumSum is an
ONNX op) and is also better conditioned for long horizons."""
import torch
import torch.nn.functional as F
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x8",)
EXPECTED_RULES = ()
ONNX = True


class SurvivalHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.hazard = nn.Linear(8, 6)

    def forward(self, x):
        return torch.exp(torch.cumsum(F.logsigmoid(self.hazard(x)), dim=-1))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return SurvivalHead().eval()
