"""EG401 good: one code path. Both exporters translate exact GELU (ONNX opset 20 has a Gelu
op; older opsets get it spelled out with Erf), so there is no reason to approximate it."""
import torch
import torch.nn.functional as F
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x16",)
EXPECTED_RULES = ()
ONNX = True


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return Encoder().eval()
