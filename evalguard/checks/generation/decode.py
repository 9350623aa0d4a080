"""Greedy decoding in eager PyTorch (transformers' own ``generate``) and the step-by-step
comparison of two decodes that all three rules share.

Two decodes are compared along the reference's tokens: the logits at step s depend only on
the tokens before s, so while the tokens agree every step compares the same context, and the
first step where the greedy tokens differ is where two free-running decodes part. A token that
flips while every logit is within tolerance is a near-tie between two tokens (random-weight
models have many), reported as ``tie`` and never as a finding.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from evalguard.checks.generation.facts import DIFFERS, MATCHES, TIE, DecodeComparison, Divergence
from evalguard.tensors import compare as compare_tensors

#: (atol, rtol) for logits by dtype (EG401's defaults); [tool.evalguard.tolerances] overrides them.
DEFAULT_TOLERANCES = {torch.float32: (1e-4, 1e-3), torch.float64: (1e-8, 1e-6),
                      torch.float16: (1e-2, 1e-2), torch.bfloat16: (5e-2, 2e-2)}
#: Prompt lengths: two different ones, so the batched prompts need left padding (EG410).
PROMPT_LENGTHS = (5, 8)


@dataclass
class Decode:
    """One greedy decode of one prompt: the new tokens and the logits at each step."""

    tokens: list[int]
    logits: list[torch.Tensor]       # one [vocab] tensor per step


def unsupported(model) -> str | None:
    """Why this model cannot be decoded here, or None for a decoder-only transformers LM."""
    can_generate = getattr(model, "can_generate", None)
    if not callable(can_generate) or not can_generate():
        return "the model is not a transformers model that generates (no can_generate())"
    config = getattr(model, "config", None)
    if not isinstance(getattr(config, "vocab_size", None), int):
        return "the model's config has no vocab_size to draw prompts from"
    return None


def encoder_decoder(model) -> bool:
    return bool(getattr(model.config, "is_encoder_decoder", False))


def pad_id(config) -> int:
    for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
        value = getattr(config, name, None)
        value = value[0] if isinstance(value, (list, tuple)) and value else value
        if isinstance(value, int) and 0 <= value < config.vocab_size:
            return value
    return 0


def prompts(config, seed: int) -> list[torch.Tensor]:
    """Random token prompts (1-D int64) of PROMPT_LENGTHS, never holding the pad token."""
    generator = torch.Generator().manual_seed(seed)
    vocab, pad = config.vocab_size, pad_id(config)
    made = []
    for length in PROMPT_LENGTHS:
        ids = torch.randint(0, vocab, (length,), generator=generator)
        ids[ids == pad] = (pad + 1) % vocab
        made.append(ids)
    return made


def left_padded(batch: list[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of the prompts left-padded to the longest."""
    width = max(len(p) for p in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, prompt in enumerate(batch):
        ids[row, width - len(prompt):] = prompt
        mask[row, width - len(prompt):] = 1
    return ids, mask


def generate(model, ids: torch.Tensor, mask: torch.Tensor, steps: int, use_cache: bool) -> list[Decode]:
    """``model.generate`` greedy, exactly ``steps`` new tokens per row (no EOS stop, no logits
    processors: the model's own generation config is replaced), one Decode per row."""
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=steps, min_new_tokens=0, do_sample=False, num_beams=1,
                              eos_token_id=None, pad_token_id=pad_id(model.config), use_cache=use_cache,
                              output_logits=True, return_dict_in_generate=True,
                              decoder_start_token_id=_start_token(model), bos_token_id=_own(model, "bos_token_id"))
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    new = out.sequences[:, -steps:]   # exactly ``steps`` new tokens: no EOS stop
    return [Decode([int(t) for t in new[row]], [step[row].detach().float() for step in out.logits])
            for row in range(ids.shape[0])]


def _own(model, name: str):
    """The model's own generation config's value for ``name``, else its config's (None if neither)."""
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, name, None)
        if value is not None:
            return value
    return None


def _start_token(model):
    """An encoder-decoder's decoder start token (T5: the pad token); None for decoder-only models."""
    if not encoder_decoder(model):
        return None
    start = _own(model, "decoder_start_token_id")
    return pad_id(model.config) if start is None else start


def tolerances(dtype: torch.dtype, overrides) -> tuple[float, float]:
    atol, rtol = DEFAULT_TOLERANCES.get(dtype, DEFAULT_TOLERANCES[torch.float32])
    overrides = overrides or {}
    return float(overrides.get("atol", atol)), float(overrides.get("rtol", rtol))


def compare(rule: str, comparison: str, prompt: int, prompt_length: int, reference: Decode, other: Decode,
            atol: float, rtol: float, first_position: int | None = None) -> DecodeComparison:
    """Step by step while the tokens agree, and the step where they part (see the module doc).
    ``first_position`` is the sequence index of the first new token: the prompt's length for a
    decoder-only model (the default), 1 for an encoder-decoder's decoder (after its start token)."""
    start = prompt_length if first_position is None else first_position
    diffs: list[float] = []
    failing, divergence = None, None
    for step, (expected, actual) in enumerate(zip(reference.logits, other.logits)):
        difference = compare_tensors("logits", actual, expected, atol, rtol)
        diffs.append(float(f"{difference.max_abs_diff:.6g}"))   # 6 significant digits
        if failing is None and not difference.matches:
            failing = step
        if reference.tokens[step] != other.tokens[step]:
            divergence = Divergence(step, start + step, reference.tokens[step], other.tokens[step])
            break
    status = DIFFERS if failing is not None else (TIE if divergence else MATCHES)
    return DecodeComparison(rule, comparison, prompt, prompt_length, len(diffs), tuple(diffs), atol, rtol,
                            divergence, failing, status)
