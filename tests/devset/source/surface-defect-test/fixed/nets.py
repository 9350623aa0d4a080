# Devset (evalguard): shape of mengcius/Surface-Defect-Detection models -- two networks defined in
# another file of the project, both with BatchNorm.
import torch.nn as nn


class SegmentNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.BatchNorm2d(32), nn.ReLU())
        self.mask = nn.Conv2d(32, 1, 1)

    def forward(self, x):
        features = self.layer(x)
        return {"f": features, "seg": self.mask(features)}


class DecisionNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Sequential(nn.Conv2d(33, 8, 5, padding=2), nn.BatchNorm2d(8), nn.ReLU())
        self.fc = nn.Linear(8, 1)

    def forward(self, f, s):
        return self.fc(self.layer(f).mean(dim=(2, 3)))
