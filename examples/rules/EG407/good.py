"""EG407 good: the same rescaling as tensor operations (torch.where), which every backend captures."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x8",)
EXPECTED_RULES = ()
ONNX = True
BACKENDS = "onnxruntime,aoti"


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        peak = x.abs().amax()
        x = torch.where(peak > 10, x / peak, x)
        return self.head(x)


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return Gate().eval()
