import torch.nn as nn

__all__ = ["lavt", "lavt_one"]


class LAVT(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 128, 4, 4), nn.BatchNorm2d(128), nn.GELU())
        self.fusion = nn.Sequential(nn.Conv1d(768, 128, 1), nn.Dropout(args.fusion_drop + 0.1))
        self.classifier = nn.Sequential(nn.Conv2d(128, 2, 1), nn.Upsample(scale_factor=4))

    def forward(self, x, l_feats, l_mask):
        vis = self.backbone(x)
        lang = self.fusion(l_feats).mean(-1)[:, :, None, None]
        return self.classifier(vis * lang)


def lavt(pretrained="", args=None):
    return LAVT(args)


def lavt_one(pretrained="", args=None):
    return LAVT(args)
