"""EG904 good: a scripted model that only calls pure tensor operations.

Audited as the archive build_program() writes: it loads and audits with no finding.
"""
import torch
from torch import nn

AUDIT = "program"
EXPECTED_RULES = []
INPUT_SHAPES = ["2x4"]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return torch.relu(self.fc(x))


def build_program(path):
    torch.jit.save(torch.jit.script(Net().eval()), str(path))
