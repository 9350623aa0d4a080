import torch
from torch import nn

from anomalib.models.components.feature_extractors.feature_extractor import FeatureExtractor


class DFMModel(nn.Module):
    def __init__(self, backbone="resnet18", layer="layer3", pooling_kernel_size=4):
        super().__init__()
        self.layer = layer
        self.pooling_kernel_size = pooling_kernel_size
        self.feature_extractor = FeatureExtractor(backbone=backbone, layers=[layer])
        self.register_buffer("mean", torch.zeros(1))

    def fit(self, features):
        self.mean = features.mean(dim=0)

    def get_features(self, batch):
        with torch.no_grad():
            features = self.feature_extractor(batch)[self.layer]
        features = nn.functional.avg_pool2d(features, self.pooling_kernel_size)
        return features.view(features.shape[0], -1)

    def forward(self, batch):
        return ((self.get_features(batch) - self.mean) ** 2).sum(dim=1)
