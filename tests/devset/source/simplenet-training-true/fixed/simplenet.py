# Devset (evalguard): bug shape from Coderx7/SimpleNet issue #2 ("functional dropout ... with the
# variable training set to True"): the network gives a different output on every run in eval mode.
# Written anew for evalguard.
import torch.nn as nn
import torch.nn.functional as F


class SimpleNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
        self.classifier = nn.Linear(64, classes)

    def forward(self, x):
        out = self.features(x)
        out = F.max_pool2d(out, kernel_size=out.size()[2:])
        out = F.dropout2d(out, 0.1, training=self.training)
        return self.classifier(out.view(out.size(0), -1))
