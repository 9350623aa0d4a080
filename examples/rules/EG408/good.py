"""EG408 good: a tiny Llama (transformers, built from its config, random weights). Its decoder step
exported with past key values and decoded in ONNX Runtime with that cache picks the same greedy
tokens as eager PyTorch, with logits within float32 tolerance at every step."""
import torch
from transformers import LlamaConfig, LlamaForCausalLM

AUDIT = "model"
EXPECTED_RULES = ()
ONNX = True
GENERATE = 8


def build_model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()
