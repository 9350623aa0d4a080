"""EG301 good: decoupled weight decay (AdamW or decoupled_weight_decay=True), or no decay in Adam.

Audited as source (never run).
"""
import lightning.pytorch as pl
import torch
import torch.optim as optim
from torch import nn
from torch.optim import AdamW

WEIGHT_DECAY = 1e-2
NO_DECAY = ("bias", "LayerNorm.weight")

AUDIT = "source"


class Classifier(pl.LightningModule):
    def __init__(self, lr: float = 1e-3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.ReLU(), nn.Linear(32, 4))
        self.lr = lr

    def forward(self, x):
        return self.net(x)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=WEIGHT_DECAY)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def build_optimizer(model: nn.Module, lr: float = 5e-5):
    grouped = [
        {"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in NO_DECAY)],
         "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if any(nd in n for nd in NO_DECAY)],
         "weight_decay": 0.0},
    ]
    return AdamW(grouped, lr=lr)


def build_decoupled_adam(model: nn.Module):
    # torch >= 2.7: Adam with decoupled_weight_decay=True is AdamW.
    return optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.01, decoupled_weight_decay=True)


def build_plain_adam(model: nn.Module):
    # Adam without weight decay (the default weight_decay=0) is fine.
    return optim.Adam(model.parameters(), lr=1e-3)


def build_sgd(model: nn.Module):
    # For SGD, L2 in the gradient and weight decay are the same thing.
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
