"""EG404 good: `flatten(1)` (or `x.reshape(x.shape[0], -1)`) keeps the batch size symbolic,
so the exported file accepts any batch size."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x3x4",)
EXPECTED_RULES = ()
ONNX = True


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        return self.fc(x.flatten(1))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return Head().eval()
