"""EG409 bad: a tiny Llama whose attention writes each decoded token's keys and values one slot too
early (the off-by-one of a hand-written static cache, ``cache[:, :, pos - 1] = k``): the previous
token's entry is overwritten and the slot the new one belongs in stays zero. The prompt pass fills
the cache correctly and a pass without cache never touches it, so only cached decoding goes wrong."""
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaAttention

AUDIT = "model"
EXPECTED_RULES = ("EG409",)
GENERATE = 8


class _WrongSlot:
    """The cache as the attention sees it: update() writes a decoded token at position - 1."""

    def __init__(self, cache):
        self.cache = cache

    def update(self, keys, values, layer_idx, **kwargs):
        layer = self.cache.layers[layer_idx]
        decoding = getattr(layer, "is_initialized", False) and layer.keys.shape[-2] > 0
        all_keys, all_values = self.cache.update(keys, values, layer_idx, **kwargs)
        if decoding:
            for stored in (all_keys, all_values):
                stored[..., -2, :] = stored[..., -1, :]
                stored[..., -1, :] = 0.0
        return all_keys, all_values


class OffByOneCacheAttention(LlamaAttention):
    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, cache=None, **kwargs):
        cache = _WrongSlot(cache) if cache is not None else None
        return super().forward(hidden_states, position_embeddings, attention_mask, cache, **kwargs)


def build_model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    for layer in model.model.layers:
        layer.self_attn.__class__ = OffByOneCacheAttention
    return model
