"""The demo: a small image classifier as a serving script might build it.

It carries three of the bugs evalguard exists for:
- the factory never calls ``model.eval()``, so Dropout and BatchNorm run in training mode
  when served (EG101) and two identical requests get different answers (EG102);
- a Dropout feeds a BatchNorm through a conv layer, the layout whose variance shift
  Li et al. (CVPR 2019) analysed (EG201), and with p=0.3 it is heavy for such a block (EG206).

`good_model` is the same network laid out and served correctly.
"""
import torch
from torch import nn


class TinyClassifier(nn.Module):
    def __init__(self, num_classes: int = 10, dropout_before_bn: bool = True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        # The bug under demonstration: dropout on the features that the next BatchNorm normalises.
        self.drop = nn.Dropout2d(0.3) if dropout_before_bn else nn.Identity()
        self.block = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.drop(x)
        x = self.block(x)
        return self.head(self.pool(x).flatten(1))


def _trained(model: nn.Module) -> nn.Module:
    """A few training steps on random data, so BatchNorm statistics are real."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(3):
        images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def build_model() -> nn.Module:
    """As the buggy serving code builds it: trained, then returned without eval()."""
    torch.manual_seed(0)  # the same weights on every run, so audits of the demo are reproducible
    return _trained(TinyClassifier(dropout_before_bn=True))


def good_model() -> nn.Module:
    """Dropout removed from between the convolutions, and put in eval mode for serving."""
    torch.manual_seed(0)
    return _trained(TinyClassifier(dropout_before_bn=False)).eval()
