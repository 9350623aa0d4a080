import torch
from torch import nn


class CRNN(nn.Module):
    def __init__(self, n_class=10):
        super().__init__()
        self.cnn = nn.Sequential(nn.Conv2d(1, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Dropout(0.5))
        self.rnn = nn.GRU(16, 32, batch_first=True, bidirectional=True)
        self.dense = nn.Linear(64, n_class)

    def forward(self, x):
        x = self.cnn(x).mean(2).transpose(1, 2)
        return torch.sigmoid(self.dense(self.rnn(x)[0]))
