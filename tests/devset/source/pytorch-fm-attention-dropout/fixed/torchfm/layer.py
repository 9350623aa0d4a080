# Devset (evalguard): bug shape from rixwew/pytorch-fm issue #21 ("F.dropout(attn_scores, p=0.1)
# should be F.dropout(attn_scores, p=0.1, training=self.training)", fixed in 8ac848d).
# Written anew for evalguard.
import torch
import torch.nn.functional as F


class AttentionalFactorizationMachine(torch.nn.Module):
    def __init__(self, embed_dim, attn_size, dropouts):
        super().__init__()
        self.attention = torch.nn.Linear(embed_dim, attn_size)
        self.projection = torch.nn.Linear(attn_size, 1)
        self.fc = torch.nn.Linear(embed_dim, 1)
        self.dropouts = dropouts

    def forward(self, p, q):
        inner_product = p * q
        attn_scores = F.relu(self.attention(inner_product))
        attn_scores = F.softmax(self.projection(attn_scores), dim=1)
        attn_scores = F.dropout(attn_scores, p=self.dropouts[0], training=self.training)
        attn_output = torch.sum(attn_scores * inner_product, dim=1)
        return self.fc(attn_output)
