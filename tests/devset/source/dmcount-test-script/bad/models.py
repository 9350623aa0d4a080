# Devset (evalguard): shape of cvlab-stonybrook/DM-Count models.py -- a lower-case factory (vgg19)
# builds a class whose feature extractor (with BatchNorm) is handed in by make_layers().
import torch.nn as nn


class VGG(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.features = features
        self.reg_layer = nn.Sequential(nn.Conv2d(512, 128, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.reg_layer(self.features(x))


def make_layers(channels, batch_norm=True):
    layers, in_channels = [], 3
    for v in channels:
        layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1)]
        if batch_norm:
            layers += [nn.BatchNorm2d(v)]
        layers += [nn.ReLU(inplace=True)]
        in_channels = v
    return nn.Sequential(*layers)


def vgg19():
    return VGG(make_layers([64, 128, 256, 512]))
