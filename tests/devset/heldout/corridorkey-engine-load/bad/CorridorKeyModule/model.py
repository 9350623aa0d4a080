import torch.nn as nn


class GreenFormer(nn.Module):
    def __init__(self, img_size=2048):
        super().__init__()
        self.img_size = img_size
        self.encoder = nn.Conv2d(3, 16, 3, padding=1)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.head(self.encoder(x))
