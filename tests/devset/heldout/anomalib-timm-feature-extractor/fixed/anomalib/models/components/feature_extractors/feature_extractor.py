# Held-out case (evalguard issue 27): shape of open-edge-platform/anomalib PR #714 ("Patch Timm
# Feature Extractor": add eval to the feature extractor and use torch.no_grad; fixes inconsistent
# performance between runs): a frozen timm backbone (features_only) wrapped in an nn.Module feeds a
# model whose "training" only collects features, with no backward pass. Written anew.
import timm
import torch
from torch import nn


class FeatureExtractor(nn.Module):
    def __init__(self, backbone, layers, pre_trained=True):
        super().__init__()
        self.backbone = backbone
        self.layers = layers
        self.idx = [int(layer[-1]) for layer in layers]
        self.feature_extractor = timm.create_model(
            backbone,
            pretrained=pre_trained,
            features_only=True,
            exportable=True,
            out_indices=self.idx,
        ).eval()
        self.out_dims = self.feature_extractor.feature_info.channels()

    def forward(self, inputs):
        return dict(zip(self.layers, self.feature_extractor(inputs)))
