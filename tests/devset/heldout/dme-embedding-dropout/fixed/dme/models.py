import torch.nn as nn

from dme.embedders import DynamicMetaEmbedder


class SentenceClassifier(nn.Module):
    def __init__(self, args, embedders):
        super().__init__()
        self.embedder = DynamicMetaEmbedder(args, embedders)
        self.encoder = nn.LSTM(args.proj_dim, args.hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(args.hidden * 2, args.n_classes)

    def forward(self, words):
        hidden, _ = self.encoder(self.embedder(words))
        return self.out(hidden.max(dim=1).values)
