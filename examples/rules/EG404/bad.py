"""EG404 bad: `len(x)` is a Python int while tracing, so the TorchScript exporter writes the
example batch size (2) into the Reshape; the file then fails at any other batch size."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x3x4",)
EXPECTED_RULES = ("EG404",)
ONNX = True


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        return self.fc(x.reshape(len(x), -1))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return Head().eval()
