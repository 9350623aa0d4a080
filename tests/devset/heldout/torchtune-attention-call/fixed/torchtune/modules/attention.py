# Held-out case (evalguard issue 27): shape of meta-pytorch/torchtune issue #1791 / PR #1803 ("Set
# dropout in SDPA to 0.0 when not in training mode"): the attention kernel is chosen by a helper and
# held in an attribute; forward() passes dropout_p=self.attn_dropout to it whatever the mode.
# Written anew.
import torch
from torch import nn

from torchtune.modules.attention_utils import _sdpa_or_flex_attention


class MultiHeadAttention(nn.Module):
    def __init__(self, embed_dim, num_heads, head_dim, q_proj, k_proj, v_proj, output_proj,
                 is_causal=True, attn_dropout=0.0):
        super().__init__()
        if attn_dropout < 0 or attn_dropout > 1:
            raise ValueError(f"attn_dropout ({attn_dropout}) must be between 0.0 and 1.0")
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.attn_dropout = attn_dropout
        self.is_causal = is_causal
        self.q_proj, self.k_proj, self.v_proj, self.output_proj = q_proj, k_proj, v_proj, output_proj
        self.kv_cache = None
        self._attention_call = _sdpa_or_flex_attention()

    def forward(self, x, y=None, mask=None):
        b, s_x, _ = x.shape
        y = x if y is None else y
        q = self.q_proj(x).view(b, s_x, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(y).view(b, y.shape[1], self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(y).view(b, y.shape[1], self.num_heads, self.head_dim).transpose(1, 2)
        output = self._attention_call(
            q,
            k,
            v,
            mask=mask,
            dropout_p=self.attn_dropout if self.training else 0.0,
            is_causal=self.kv_cache is None and mask is None and self.is_causal,
        )
        output = output.transpose(1, 2).contiguous().view(b, s_x, -1)
        return self.output_proj(output)


def make_attention(embed_dim=64, num_heads=4, attn_dropout=0.1):
    head_dim = embed_dim // num_heads
    return MultiHeadAttention(embed_dim, num_heads, head_dim, nn.Linear(embed_dim, embed_dim),
                              nn.Linear(embed_dim, embed_dim), nn.Linear(embed_dim, embed_dim),
                              nn.Linear(embed_dim, embed_dim), attn_dropout=attn_dropout)


if __name__ == "__main__":
    layer = make_attention().eval()
    print(layer(torch.randn(2, 5, 64)).shape)
