"""EG302 bad: weight decay applied to every parameter, biases and LayerNorm included.

A checkpoint example: ``build_checkpoint(path)`` trains one AdamW step and saves the model and
optimizer state the usual way; the audit is
``evalguard check ckpt.pt --model examples/rules/EG302/bad.py:build_model --no-onnx``.
Decaying biases and normalisation gains pulls them towards zero for no regularisation benefit.
"""
import torch
from torch import nn

AUDIT = "checkpoint"
EXPECTED_RULES = ("EG302",)


def build_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 2))
    return model.eval()


def build_checkpoint(path) -> None:
    model = build_model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    loss = model(torch.randn(4, 8)).square().mean()
    loss.backward()
    optimizer.step()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
