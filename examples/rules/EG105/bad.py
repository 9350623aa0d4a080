"""EG105 bad: functional dropout that ignores the module's mode.

Audited as source (never run). model.eval() cannot switch these off: they are function calls,
not Dropout modules, and only their own arguments decide whether they drop.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.functional import scaled_dot_product_attention as sdpa

AUDIT = "source"


class SelfAttention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        out = sdpa(q, k, v, dropout_p=self.dropout, is_causal=True)  # [EG105]
        out = out.transpose(1, 2).reshape(b, t, d)
        return F.dropout(self.proj(out), p=self.dropout)  # [EG105]


class ManualAttention(nn.Module):
    def __init__(self, dim: int = 32, p: float = 0.1):
        super().__init__()
        self.scale = 1 / math.sqrt(dim)
        self.p = p

    def forward(self, q, k, v):
        weights = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)
        weights = torch.nn.functional.dropout(weights, self.p, True)  # [EG105]
        return weights @ v


class Head(nn.Module):
    def __init__(self, dim: int = 32, use_dropout: bool = True):
        super().__init__()
        self.fc = nn.Linear(dim, 2)
        self.use_dropout = use_dropout

    def forward(self, x):
        return self.fc(self._regularise(x))

    def _regularise(self, x):
        # A configuration flag is not the mode: after eval() this still drops.
        return F.dropout(x, p=0.2, training=self.use_dropout)  # [EG105]
