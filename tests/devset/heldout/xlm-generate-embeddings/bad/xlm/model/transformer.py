import torch.nn as nn
import torch.nn.functional as F


class TransformerModel(nn.Module):
    def __init__(self, params, dico, is_encoder, with_output):
        super().__init__()
        self.dim = params.emb_dim
        self.dropout = params.dropout
        self.embeddings = nn.Embedding(params.n_words, self.dim, padding_idx=params.pad_index)
        self.lang_embeddings = nn.Embedding(params.n_langs, self.dim)
        self.layer = nn.TransformerEncoderLayer(self.dim, params.n_heads, dropout=params.attention_dropout)

    def forward(self, mode, **kwargs):
        if mode == "fwd":
            return self.fwd(**kwargs)
        raise ValueError(mode)

    def fwd(self, x, lengths, langs=None, causal=False):
        tensor = self.embeddings(x) + self.lang_embeddings(langs)
        tensor = F.dropout(tensor, p=self.dropout, training=self.training)
        return self.layer(tensor)
