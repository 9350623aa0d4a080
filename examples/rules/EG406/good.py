"""EG406 good: one code path for every backend; torch.compile fuses the exact GELU itself."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x8",)
EXPECTED_RULES = ()
ONNX = True
BACKENDS = "onnxruntime,torch-compile"


class Scorer(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 16)
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        return self.out(torch.nn.functional.gelu(self.proj(x)))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return Scorer().eval()
