# Shape of YAndrewL/CLAPE#1, in evalguard's own words: the binding-site predictor (BatchNorm)
# is run on new sequences without predictor.eval(), so BatchNorm uses and updates batch statistics.
import torch.nn as nn


class CNNOD(nn.Module):
    def __init__(self, in_dim=1024, hidden=128):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(in_dim, hidden, 3, padding=1), nn.BatchNorm1d(hidden), nn.ReLU(),
                                  nn.Conv1d(hidden, 2, 1))

    def forward(self, x):
        return self.conv(x.transpose(1, 2)).transpose(1, 2)
