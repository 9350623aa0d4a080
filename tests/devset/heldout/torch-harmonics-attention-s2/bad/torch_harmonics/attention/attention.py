# Held-out case (evalguard issue 27): shape of NVIDIA/torch-harmonics PR #221 ("Disable AttentionS2
# dropout in eval mode"): the module keeps drop_rate and hands it to scaled_dot_product_attention on
# every call, through a small wrapper that reshapes the heads. Written anew.
import torch
import torch.nn as nn
import torch.nn.functional as F


def _multihead_sdpa(q, k, v, num_heads, drop_rate, scale=None):
    b, n, c = q.shape
    split = lambda t: t.view(b, -1, num_heads, c // num_heads).transpose(1, 2)  # noqa: E731
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), dropout_p=drop_rate, scale=scale)
    return out.transpose(1, 2).reshape(b, n, c)


class AttentionS2(nn.Module):
    def __init__(self, in_channels, num_heads, in_shape, drop_rate=0.0, scale=None):
        super().__init__()
        self.num_heads = num_heads
        self.drop_rate = drop_rate
        self.scale = scale
        self.q = nn.Conv2d(in_channels, in_channels, 1)
        self.k = nn.Conv2d(in_channels, in_channels, 1)
        self.v = nn.Conv2d(in_channels, in_channels, 1)
        self.proj = nn.Conv2d(in_channels, in_channels, 1)
        self.register_buffer("quad_weights", torch.ones(in_shape[0], 1) / in_shape[0])

    def forward(self, query, key=None, value=None):
        key = query if key is None else key
        value = key if value is None else value
        b, c, h, w = query.shape
        flat = lambda t: t.flatten(2).transpose(1, 2)  # noqa: E731
        out = _multihead_sdpa(flat(self.q(query)), flat(self.k(key)), flat(self.v(value)),
                              self.num_heads, self.drop_rate, self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, c, h, w))
