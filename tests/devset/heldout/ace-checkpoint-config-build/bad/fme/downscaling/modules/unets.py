import torch
from torch import nn


class UNetBlock(nn.Module):
    def __init__(self, channels, dropout):
        super().__init__()
        self.norm = nn.GroupNorm(4, channels)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, emb):
        return x + self.dropout(self.conv(torch.relu(self.norm(x)) + emb[:, :, None, None]))


class SongUNet(nn.Module):
    def __init__(self, in_channels, out_channels, channels=32, dropout=0.1):
        super().__init__()
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.emb = nn.Linear(1, channels)
        self.blocks = nn.ModuleList([UNetBlock(channels, dropout) for _ in range(2)])
        self.out = nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(self, x, sigma):
        emb = self.emb(sigma[:, None])
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)
