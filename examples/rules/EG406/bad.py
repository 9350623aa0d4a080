"""EG406 bad: a bfloat16 model whose forward is a long chain of elementwise steps (32 Euler steps of
dx/dt = tanh(x), as in a fixed-step ODE block or a sampler loop). No code path differs between
backends: eager PyTorch rounds to bfloat16 after every op, while torch.compile (Inductor) fuses the
chain into one kernel that computes in float32 and rounds once. The served model rounds differently
and the errors add up past bfloat16's tolerances (measured: max abs error 0.375, 54% of elements out
of tolerance). TorchScript runs eager's kernels and matches; ONNX Runtime runs the float32 copy."""
import torch
from torch import nn

AUDIT = "model"
INPUT_SHAPES = ("4x256",)
INPUT_DTYPE = "bfloat16"
EXPECTED_RULES = ("EG406",)
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
            x = x + self.dt * torch.tanh(x)   # eager rounds here, 3 times a step; Inductor does not
        return x


def build_model() -> nn.Module:
    return EulerBlock().to(torch.bfloat16).eval()
