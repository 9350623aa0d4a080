"""EG406 bad: a "fast path" taken only while torch.compile captures the model. Eager PyTorch
(what was validated) and the ONNX export never take it; the compiled model that is served does."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x8",)
EXPECTED_RULES = ("EG406",)
ONNX = True
BACKENDS = "onnxruntime,torch-compile"


class Scorer(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 16)
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        h = self.proj(x)
        if torch.compiler.is_compiling():
            h = h * torch.sigmoid(1.702 * h)   # "cheaper" GELU, only in the compiled graph
        else:
            h = torch.nn.functional.gelu(h)
        return self.out(h)


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return Scorer().eval()
