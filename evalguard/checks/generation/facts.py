"""Typed facts of the generation family (``--generate N``), one ``GenerationFacts`` per target.

Each comparison of two decoders (eager PyTorch with its cache as the reference) is a
``DecodeComparison``: the logits' max abs difference per step, the first (step, position) where
the greedy tokens differ and, when they do, the two tokens. Nothing here imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

#: DecodeComparison.status values
MATCHES, DIFFERS, TIE = "matches", "differs", "tie"


@dataclass(frozen=True)
class Divergence:
    """Where two greedy decodes first pick different tokens."""

    step: int                        # 0 = the first generated token
    #: index in the decoded sequence: the prompt's own tokens first for a decoder-only model (not
    #: counting padding), the decoder's sequence (start token at 0) for an encoder-decoder
    position: int
    expected_token: int              # the reference's token
    actual_token: int


@dataclass(frozen=True)
class DecodeComparison:
    rule: str                        # EG408 | EG409 | EG410
    comparison: str                  # "onnxruntime (KV cache) vs eager generate(use_cache=True)", ...
    prompt: int                      # index of the prompt
    prompt_length: int
    steps: int                       # tokens compared (up to and including the first divergence)
    #: per step: the largest |logits difference| over the vocabulary, compared while tokens agree
    max_abs_diff: tuple[float, ...] = ()
    atol: float = 0.0
    rtol: float = 0.0
    first_divergence: Divergence | None = None
    first_failing_step: int | None = None   # first step whose logits are beyond tolerance
    #: "matches"; "differs" (logits beyond tolerance: the rule fires); "tie" (a token flipped
    #: where every logit was within tolerance: a near-tie between two tokens, no finding)
    status: str = MATCHES


@dataclass(frozen=True)
class GenerationFacts:
    family: ClassVar[str] = "generation"

    steps: int                               # --generate N
    prompts: tuple[str, ...] = ()            # "prompt 0: 5 tokens", ...
    runtime: str | None = None               # what EG408 ran: "onnxruntime (TorchScript export, KV cache)"
    export_seconds: float | None = None
    comparisons: tuple[DecodeComparison, ...] = ()
    notes: tuple[str, ...] = ()
