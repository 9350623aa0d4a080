# Held-out case (evalguard issue 27): shape of facebookresearch/DME issue #3 ("Dropout is still
# enabled during inference", fixed): the meta-embedder applies functional dropout to the combined
# embedding with only p=..., so it also drops at test time. Written anew.
import torch
import torch.nn as nn
import torch.nn.functional as F


class DynamicMetaEmbedder(nn.Module):
    def __init__(self, args, embedders):
        super().__init__()
        self.args = args
        self.embedders = nn.ModuleList(embedders)
        self.projectors = nn.ModuleList([nn.Linear(e.embedding_dim, args.proj_dim) for e in embedders])
        self.attn = nn.Linear(args.proj_dim, 1)

    def forward(self, words):
        projected = [proj(emb(words)) for emb, proj in zip(self.embedders, self.projectors)]
        stacked = torch.stack(projected, dim=2)
        weights = torch.softmax(self.attn(stacked), dim=2)
        out = (weights * stacked).sum(dim=2)
        out = F.dropout(out, p=self.args.emb_dropout, training=self.training)
        return out
