import torch.nn as nn
import torchvision

from fastai.learner import Learner


class ConvnetBuilder:
    def __init__(self, arch, n_classes, ps=0.5):
        body = nn.Sequential(*list(arch(weights=None).children())[:-1], nn.Flatten())
        head = nn.Sequential(nn.BatchNorm1d(512), nn.Dropout(ps), nn.Linear(512, n_classes))
        self.model = nn.Sequential(body, head)


class ConvLearner(Learner):
    @classmethod
    def pretrained(cls, data, n_classes, arch=torchvision.models.resnet34):
        return cls(data, ConvnetBuilder(arch, n_classes))
