import torch.nn as nn


class FastSCNN(nn.Module):
    def __init__(self, num_class):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
                                 nn.Conv2d(32, num_class, 1), nn.Upsample(scale_factor=2))

    def forward(self, x):
        return self.net(x)
