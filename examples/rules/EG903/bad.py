"""EG903 bad: torch.load(weights_only=False) runs whatever the pickle asks for.

Audited as source (never run).
"""
import torch
from torch import load as load_file

AUDIT = "source"
TRUST_PICKLES = False


def load_checkpoint(path: str, model: torch.nn.Module) -> dict:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)  # [EG903]
    model.load_state_dict(checkpoint["model"])
    return checkpoint


def load_full_module(path: str) -> torch.nn.Module:
    # Any import spelling, and a flag held in a module-level constant.
    return load_file(path, weights_only=TRUST_PICKLES)  # [EG903]
