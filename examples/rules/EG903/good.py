"""EG903 good: weights-only loading, with extra classes allowed explicitly.

Audited as source (never run).
"""
import torch
from torch.serialization import safe_globals

AUDIT = "source"


class TrainingConfig:
    lr: float = 1e-3


def load_checkpoint(path: str, model: torch.nn.Module) -> dict:
    # weights_only=True is the default since torch 2.6; saying so documents the intent.
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model"])
    return checkpoint


def load_with_config(path: str) -> dict:
    # A checkpoint that pickled one of our own classes: allow exactly that class.
    with safe_globals([TrainingConfig]):
        return torch.load(path, map_location="cpu")
