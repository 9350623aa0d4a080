"""EG406 good: the same Euler block in float32. Inductor still fuses the chain, but in float32 its
kernel keeps nothing that eager rounds away (measured: max abs error 0). For a bfloat16 model that
must stay bfloat16, torch._inductor.config.emulate_precision_casts = True makes Inductor round like eager."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x256",)
EXPECTED_RULES = ()
ONNX = True
BACKENDS = "onnxruntime,torch-compile,torchscript"


class EulerBlock(nn.Module):
    def __init__(self, steps: int = 32, dt: float = 0.01):
        super().__init__()
        self.scale = nn.Parameter(torch.full((256,), 3.0))
        self.steps, self.dt = steps, dt

    def forward(self, x):
        x = x * self.scale
        for _ in range(self.steps):
            x = x + self.dt * torch.tanh(x)
        return x


def build_model() -> nn.Module:
    return EulerBlock().eval()
