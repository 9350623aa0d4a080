"""EG207 good: every parameter and buffer is finite."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x4",)
INPUT_DTYPE = "int64"
EXPECTED_RULES = ()


class TextClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, ids):
        return self.head(self.embed(ids).mean(dim=1))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return TextClassifier().eval()
