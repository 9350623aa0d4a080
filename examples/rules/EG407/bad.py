"""EG407 bad: Python control flow on a tensor's value. Eager PyTorch runs it and the TorchScript
ONNX exporter traces one branch, but torch.export (for an AOTInductor package) cannot capture it."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x8",)
EXPECTED_RULES = ("EG407",)
ONNX = True
BACKENDS = "onnxruntime,aoti"


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        if x.abs().amax() > 10:          # a data-dependent Python branch
            x = x / x.abs().amax()
        return self.head(x)


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return Gate().eval()
