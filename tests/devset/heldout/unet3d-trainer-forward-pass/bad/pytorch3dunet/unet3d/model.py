import torch.nn as nn


class UNet3D(nn.Module):
    def __init__(self, in_channels, out_channels, f_maps=32, dropout_prob=0.1):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv3d(in_channels, f_maps, 3, padding=1), nn.BatchNorm3d(f_maps), nn.ReLU(),
                                 nn.Dropout3d(dropout_prob))
        self.final = nn.Conv3d(f_maps, out_channels, 1)

    def forward(self, x):
        return self.final(self.enc(x))


def get_model(config):
    return {"UNet3D": UNet3D}[config["name"]](**config["args"])
