import torch
import torch.nn as nn


class REBNCONV(nn.Module):
    def __init__(self, in_ch, out_ch, dirate=1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class U2NET(nn.Module):
    def __init__(self, in_ch=3, out_ch=1):
        super().__init__()
        self.stage1 = REBNCONV(in_ch, 32)
        self.stage2 = REBNCONV(32, 32, dirate=2)
        self.side = nn.Conv2d(32, out_ch, 3, padding=1)

    def forward(self, x):
        h = self.stage2(self.stage1(x))
        return (torch.sigmoid(self.side(h)),)
