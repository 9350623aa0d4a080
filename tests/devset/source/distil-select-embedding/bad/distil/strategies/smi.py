# decile-team/distil issue 42: SMI.select() needs the model in eval mode.
import torch

from distil.strategies.strategy import Strategy


class SMI(Strategy):
    def __init__(self, labeled_dataset, unlabeled_dataset, query_dataset, net, nclasses, args=None):
        super().__init__(labeled_dataset, unlabeled_dataset, net, nclasses, args)
        self.query_dataset = query_dataset

    def select(self, budget):
        pool = self.get_embedding(self.unlabeled_dataset)
        query = self.get_embedding(self.query_dataset)
        scores = (pool @ query.T).max(1).values
        return torch.topk(scores, budget).indices.tolist()
