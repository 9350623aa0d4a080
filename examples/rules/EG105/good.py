"""EG105 good: functional dropout that follows self.training, or a Dropout module.

Audited as source (never run).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

AUDIT = "source"


class SelfAttention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)      # a module: eval() switches it off

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        out = out.transpose(1, 2).reshape(b, t, d)
        return self.resid_dropout(self.proj(out))


class ManualAttention(nn.Module):
    def __init__(self, dim: int = 32, p: float = 0.1):
        super().__init__()
        self.scale = 1 / math.sqrt(dim)
        self.p = p

    def forward(self, q, k, v):
        weights = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)
        weights = F.dropout(weights, self.p, self.training)
        return weights @ v


class Head(nn.Module):
    def __init__(self, dim: int = 32, use_dropout: bool = True):
        super().__init__()
        self.fc = nn.Linear(dim, 2)
        self.use_dropout = use_dropout

    def forward(self, x):
        # Hugging Face style: compute the rate from the mode, then pass it on.
        p = 0.2 if (self.training and self.use_dropout) else 0.0
        return self.fc(F.dropout(x, p=p, training=self.training))

    def mc_sample(self, x, training: bool):
        # The caller decides (Monte Carlo dropout): a parameter passed down is fine.
        return F.dropout(x, p=0.2, training=training)
