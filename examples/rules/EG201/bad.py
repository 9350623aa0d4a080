"""EG201 bad: a custom forward runs conv -> Dropout -> BatchNorm. The Dropout's output reaches
the BatchNorm, so BatchNorm's running variance is learned from dropped-out activations and is
too large at inference (variance shift, Li et al., CVPR 2019). No nn.Sequential shows it: only
the dataflow does."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("2x3x8x8",)
EXPECTED_RULES = ("EG201",)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.drop = nn.Dropout2d(0.1)
        self.bn1 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = self.bn1(self.drop(x))          # Dropout output normalised by BatchNorm
        return self.head(x.mean(dim=(2, 3)))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return Net().eval()
