"""EG205 good: the whole checkpoint is loaded with strict=True, running statistics included."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x8",)
EXPECTED_RULES = ()


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.norm1 = nn.Linear(8, 16), nn.BatchNorm1d(16)
        self.fc2, self.norm2 = nn.Linear(16, 16), nn.BatchNorm1d(16)
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        x = torch.relu(self.norm1(self.fc1(x)))
        x = torch.relu(self.norm2(self.fc2(x)))
        return self.out(x)


def trained_checkpoint() -> dict:
    """Stands in for a training run: train-mode passes update every running statistic."""
    model = Net().train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(32, 8) * 3 + 1)
    return model.state_dict()


def build_model() -> nn.Module:
    torch.manual_seed(0)
    model = Net()
    model.load_state_dict(trained_checkpoint(), strict=True)
    return model.eval()
