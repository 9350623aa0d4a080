# Shape of decile-team/distil#42, in evalguard's own words: the selection strategies compute
# embeddings of the unlabeled pool with the network they were handed, without eval().
import torch
from torch.utils.data import DataLoader


class Strategy:
    def __init__(self, labeled_dataset, unlabeled_dataset, net, nclasses, args=None):
        self.labeled_dataset = labeled_dataset
        self.unlabeled_dataset = unlabeled_dataset
        self.model = net
        self.target_classes = nclasses
        self.args = args or {}

    def update_model(self, clf):
        self.model = clf

    def get_embedding(self, dataset):
        loader = DataLoader(dataset, batch_size=self.args.get("batch_size", 64))
        chunks = []
        with torch.no_grad():
            for x in loader:
                _, emb = self.model(x, last=True)
                chunks.append(emb)
        return torch.cat(chunks)
