# Devset (evalguard): bug shape from yangze0930/NTS-Net issue #14 ("x = nn.Dropout(p=0.5)(x) ...
# set net.eval() doesn't work for it"): a Dropout module built and applied inside forward().
# Written anew for evalguard.
import torch.nn as nn


class ResNet(nn.Module):
    def __init__(self, num_classes=200):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        feature = self.avgpool(self.features(x)).flatten(1)
        x = nn.Dropout(p=0.5)(feature)
        return self.fc(x), feature
