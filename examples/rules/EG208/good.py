"""EG208 good: the checkpoint holds every tensor of the architecture, and nothing else.

A checkpoint example: ``build_checkpoint(path)`` saves the weights of the same architecture
that ``build_model`` builds; every key matches.
"""
import torch
from torch import nn

AUDIT = "checkpoint"
INPUT_SHAPES = ("2x8",)
EXPECTED_RULES = ()


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.body(x))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return Classifier().eval()


def build_checkpoint(path) -> None:
    torch.manual_seed(1)
    torch.save({"epoch": 10, "model": Classifier().state_dict()}, path)
