"""EG403 bad: a hand-written normalisation layer passes `training=True` to F.batch_norm, so
even the eval-mode export holds a BatchNormalization node with training_mode=1: every batch
is normalised with its own statistics, in PyTorch and in the ONNX file alike (EG104 reports
the batch dependence of the PyTorch model)."""
import torch
import torch.nn.functional as F
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x8",)
EXPECTED_RULES = ("EG104", "EG403")
ONNX = True


class FeatureNorm(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=True)   # should be training=self.training


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), FeatureNorm(16), nn.ReLU(), nn.Linear(16, 4)).eval()
