"""EG410 good: a tiny GPT-2 (learned absolute position embeddings) that takes the position ids
generate() builds from the attention mask, so a left-padded prompt's tokens sit at the positions they
have alone."""
import torch
from transformers import GPT2Config, GPT2LMHeadModel

AUDIT = "model"
EXPECTED_RULES = ()
GENERATE = 8


def build_model():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return GPT2LMHeadModel(config).eval()
