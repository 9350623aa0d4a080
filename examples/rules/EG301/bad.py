"""EG301 bad: Adam with weight_decay is L2 folded into the adaptive step, not AdamW's decay.

Audited as source (never run). Every marked line builds an Adam-family optimizer whose weight
decay is coupled to the gradient.
"""
import lightning.pytorch as pl
import torch
import torch.optim as optim
from torch import nn
from torch.optim import Adam as A

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
        # Lightning: the optimizer returned here is the one the Trainer steps.
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=WEIGHT_DECAY)  # [EG301]
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def build_optimizer(model: nn.Module, lr: float = 5e-5):
    # Hugging Face-style parameter groups with a no-decay list, handed to plain Adam.
    grouped = [
        {"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in NO_DECAY)],
         "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if any(nd in n for nd in NO_DECAY)],
         "weight_decay": 0.0},
    ]
    return optim.Adam(grouped, lr=lr)  # [EG301]


def build_optimizer_aliased(model: nn.Module):
    # `from torch.optim import Adam as A` is still torch.optim.Adam; positional weight_decay.
    return A(model.parameters(), 1e-3, (0.9, 0.999), 1e-8, 5e-4)  # [EG301]


def build_nadam(model: nn.Module):
    # NAdam and RAdam have the same coupling unless decoupled_weight_decay=True.
    return torch.optim.NAdam(model.parameters(), lr=2e-3, weight_decay=1e-4)  # [EG301]
