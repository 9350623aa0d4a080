"""EG302 good: the Hugging Face no-decay grouping, biases and LayerNorm weights without decay.

A checkpoint example: ``build_checkpoint(path)`` trains one AdamW step and saves the model and
optimizer state; named parameter groups make torch record ``param_names`` in the state.
"""
import torch
from torch import nn

AUDIT = "checkpoint"
EXPECTED_RULES = ()
NO_DECAY = ("bias", "1.weight")      # "1" is the LayerNorm in this Sequential


def build_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 2))
    return model.eval()


def build_checkpoint(path) -> None:
    model = build_model().train()
    named = list(model.named_parameters())
    groups = [
        {"params": [(n, p) for n, p in named if not any(nd in n for nd in NO_DECAY)], "weight_decay": 0.01},
        {"params": [(n, p) for n, p in named if any(nd in n for nd in NO_DECAY)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=1e-3)
    loss = model(torch.randn(4, 8)).square().mean()
    loss.backward()
    optimizer.step()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
