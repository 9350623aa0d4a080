"""EG103 good: the functional dropout follows the module's mode."""
import torch
import torch.nn.functional as F
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x8",)
EXPECTED_RULES = ()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 16)
        self.mid = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        hidden = F.relu(self.body(x))
        hidden = F.relu(self.mid(F.dropout(hidden, p=0.2, training=self.training)))
        return self.head(hidden)


def build_model() -> nn.Module:
    torch.manual_seed(0)  # fixed weights: two audits report the same numbers
    return Net().eval()
