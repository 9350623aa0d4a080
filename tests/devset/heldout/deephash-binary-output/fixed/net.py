import torch
import torch.nn as nn


class AlexNetPlusLatent(nn.Module):
    def __init__(self, bits):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(6))
        self.remain = nn.Sequential(nn.Dropout(), nn.Linear(64 * 36, 4096), nn.ReLU(inplace=True),
                                    nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(inplace=True))
        self.Linear1 = nn.Linear(4096, bits)
        self.Linear2 = nn.Linear(bits, 10)

    def forward(self, x):
        x = self.remain(self.features(x).flatten(1))
        features = torch.sigmoid(self.Linear1(x))
        return features, self.Linear2(features)
