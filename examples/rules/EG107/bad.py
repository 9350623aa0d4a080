"""EG107 bad: forward re-enables autograd, so even `with torch.no_grad(): model(x)` builds a graph."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x8",)
EXPECTED_RULES = ("EG107",)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 16)
        self.head = nn.Linear(16, 4)

    @torch.enable_grad()
    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def build_model() -> nn.Module:
    torch.manual_seed(0)  # fixed weights: two audits report the same numbers
    return Net().eval()
