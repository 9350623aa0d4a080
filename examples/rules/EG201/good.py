"""EG201 good: BatchNorm first, Dropout after it (the placement Li et al. recommend), so the
statistics BatchNorm learns are those of activations that are never dropped."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x3x8x8",)
EXPECTED_RULES = ()


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.drop = nn.Dropout2d(0.1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.drop(x)
        return self.head(x.mean(dim=(2, 3)))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return Net().eval()
