"""EG408 bad: a tiny Llama with an "export shim": while being exported to ONNX, its forward makes the
position ids relative to the call (a workaround someone added for a runtime that wanted positions to
start at 0). A single forward pass from position 0 is unchanged, so EG401 (one pass, no cache) passes;
but with the exported KV cache every generated token is rotated as if it stood at position 0, and the
deployed decoder drifts from eager PyTorch from the first cached step on."""
import torch
from transformers import LlamaConfig, LlamaForCausalLM

AUDIT = "model"
EXPECTED_RULES = ("EG408",)
ONNX = True
GENERATE = 8


class ExportShimLlama(LlamaForCausalLM):
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kwargs):
        if torch.onnx.is_in_onnx_export() and position_ids is not None:
            position_ids = position_ids - position_ids[:, :1]   # right only when there is no cache
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               **kwargs)


def build_model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return ExportShimLlama(config).eval()
