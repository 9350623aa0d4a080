"""EG401 bad: an export-only code path. The forward swaps exact GELU for the cheaper sigmoid
approximation while `torch.onnx` is exporting (a common workaround for runtimes without a GELU
kernel), so the ONNX file computes something else than the PyTorch model it claims to be."""
import torch
import torch.nn.functional as F
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x16",)
EXPECTED_RULES = ("EG401",)
ONNX = True


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x):
        h = self.fc1(x)
        if torch.onnx.is_in_onnx_export():
            h = h * torch.sigmoid(1.702 * h)   # "fast GELU": off by up to 0.02
        else:
            h = F.gelu(h)
        return self.fc2(h)


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return Encoder().eval()
