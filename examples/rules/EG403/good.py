"""EG403 good: the layer follows the module's mode, so the eval-mode export normalises with
the running statistics (the exporter folds them into a plain affine op)."""
import torch
import torch.nn.functional as F
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x8",)
EXPECTED_RULES = ()
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
                            training=self.training)


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), FeatureNorm(16), nn.ReLU(), nn.Linear(16, 4)).eval()
