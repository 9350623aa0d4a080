import torch.nn.functional as F

from pyblaze.nn.engine.base import Engine


class MLEEngine(Engine):
    def train_batch(self, batch):
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def eval_batch(self, batch):
        x, y = batch
        return (self.model(x).argmax(-1) == y).float().mean()
