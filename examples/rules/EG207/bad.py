"""EG207 bad: one embedding row diverged to NaN during training. The example inputs never use
that token, so the forward pass looks healthy; the first request that does gets NaN."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x4",)
INPUT_DTYPE = "int64"
EXPECTED_RULES = ("EG207",)


class TextClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, ids):
        return self.head(self.embed(ids).mean(dim=1))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    model = TextClassifier()
    with torch.no_grad():
        model.embed.weight[9, :3] = float("nan")
        model.embed.weight[9, 3] = float("inf")
    return model.eval()
