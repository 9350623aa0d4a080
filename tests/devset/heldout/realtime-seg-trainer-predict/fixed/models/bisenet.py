import torch.nn as nn


class BiSeNet(nn.Module):
    def __init__(self, num_class):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.Conv2d(64, 128, 3, 2, 1), nn.BatchNorm2d(128), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Conv2d(128, num_class, 1), nn.Upsample(scale_factor=4))

    def forward(self, x):
        return self.head(self.body(x))
