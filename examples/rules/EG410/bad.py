"""EG410 bad: a tiny GPT-2 whose forward drops the position ids it is given (a wrapper written for
single prompts), so the model counts positions from the first column of the batch. Alone, a prompt
starts at position 0; left-padded behind a longer prompt, its first token sits at position 3 and
takes another learned position embedding, so the batched decode differs from the prompt decoded alone.
(A rotary model such as Llama hides this bug: a constant shift of every position leaves its attention
scores unchanged.)"""
import torch
from transformers import GPT2Config, GPT2LMHeadModel

AUDIT = "model"
EXPECTED_RULES = ("EG410",)
GENERATE = 8


class SinglePromptGPT2(GPT2LMHeadModel):
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kwargs):
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)   # position_ids lost


def build_model():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return SinglePromptGPT2(config).eval()
