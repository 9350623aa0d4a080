"""EG409 good: a tiny Llama whose attention appends each step's keys and values to the cache, as
transformers' DynamicCache does: decoding with the cache gives the tokens and logits of decoding
without it."""
import torch
from transformers import LlamaConfig, LlamaForCausalLM

AUDIT = "model"
EXPECTED_RULES = ()
GENERATE = 8


def build_model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()
