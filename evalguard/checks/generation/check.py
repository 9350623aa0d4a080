"""EG408-EG410: greedy generation must not depend on the cache, the padding or the runtime.

With ``--generate N`` and a transformers model that generates, each prompt (random tokens, two
lengths) is decoded for N tokens by the model's own ``generate`` with its KV cache: the
reference. Then:

- EG409: the same ``generate`` without a cache (``use_cache=False``) must give the same tokens and
  logits: a model whose cache update is wrong differs here first, in PyTorch itself;
- EG410: the prompts left-padded into one batch (attention mask, position ids from the mask, as
  ``generate`` builds them) must give each prompt's own tokens and logits;
- EG408: the decoder step exported to ONNX with past key values and decoded in ONNX Runtime with
  its own cache must give the same tokens and logits (skipped with ``--no-onnx``; decoder-only
  models: an encoder-decoder's EG408 is skipped with the reason, its EG409/EG410 run).

Each comparison reports the logits' max abs difference per step and the first (step, position)
where the greedy tokens differ; a rule fires when a step's logits are beyond tolerance (EG401's
per-dtype defaults or ``[tool.evalguard.tolerances]``), not on a near-tie that flips a token.
"""
from __future__ import annotations

import contextlib
import copy
import tempfile

from evalguard.checks.generation import CHECK
from evalguard.checks.generation.facts import DIFFERS, TIE, GenerationFacts
from evalguard.findings import Finding, Location
from evalguard.outcome import CheckOutcome, Outcome
from evalguard.subject import AuditOptions, AuditSubject

RULES = CHECK.rules
OFF = "generation parity runs with --generate N (N new tokens per prompt)"
REFERENCE = "eager generate(use_cache=True)"
WHAT = {"EG408": "onnxruntime with its KV cache", "EG409": "eager generate(use_cache=False)",
        "EG410": "the left-padded batch"}


def run(subject: AuditSubject, options: AuditOptions) -> CheckOutcome:
    out = Outcome(options, RULES)
    steps = int(getattr(options, "generate", 0) or 0)
    if not out.selected:
        return out.done()
    if steps <= 0:
        out.not_applicable(RULES, OFF)
        return out.done()
    from evalguard.checks.generation import decode

    reason = decode.unsupported(subject.model)
    if reason:
        out.skip(RULES, reason)
        return out.done()
    try:
        context = _eval_model(subject)
    except Exception as exc:  # noqa: BLE001 - the user's model is not ours to run in place: say why not
        out.skip(RULES, f"the model cannot be deep-copied ({type(exc).__name__}: {_first_line(exc)})")
        return out.done()
    with context as model:
        _Audit(subject, options, out, model, steps).run()
    return out.done()


def _eval_model(subject: AuditSubject):
    """A context giving the model in eval mode: the audit's own object in place (modes put back),
    a deep copy of the user's (a factory's or a live model)."""
    from evalguard.checks.running import in_eval_mode

    if subject.owns_model:
        return in_eval_mode(subject.model)
    return contextlib.nullcontext(copy.deepcopy(subject.model).eval())


class _Audit:
    def __init__(self, subject, options, out, model, steps: int):
        self.subject, self.options, self.out, self.model, self.steps = subject, options, out, model, steps
        self.comparisons: list = []
        self.notes: list[str] = []
        self.runtime, self.export_seconds = None, None

    def run(self) -> None:
        import torch

        from evalguard.checks.generation import decode
        from evalguard.checks.onnx.console import quiet

        self.prompts = decode.prompts(self.model.config, self.options.seed)
        dtype = next((p.dtype for p in self.model.parameters() if p.is_floating_point()), torch.float32)
        self.atol, self.rtol = decode.tolerances(dtype, self.options.tolerances)
        try:
            with quiet():
                self.reference = [decode.generate(self.model, p[None], torch.ones_like(p)[None], self.steps, True)[0]
                                  for p in self.prompts]
        except Exception as exc:  # noqa: BLE001 - the user's model cannot generate: say so, judge nothing
            self.out.skip(RULES, f"generate() failed on the model: {type(exc).__name__}: {_first_line(exc)}")
            return self._done()
        if self.options.wants("EG409"):
            self._decode("EG409", "generate(use_cache=False)", lambda: [
                decode.generate(self.model, p[None], torch.ones_like(p)[None], self.steps, False)[0]
                for p in self.prompts])
        if self.options.wants("EG410"):
            ids, mask = decode.left_padded(self.prompts, decode.pad_id(self.model.config))
            self._decode("EG410", "generate() on the left-padded batch",
                         lambda: decode.generate(self.model, ids, mask, self.steps, True))
        if self.options.wants("EG408"):
            self._runtime()
        self._done()

    def _runtime(self) -> None:
        from evalguard.checks.generation import decode

        if decode.encoder_decoder(self.model):
            self.out.skip("EG408", "the exported runtime of an encoder-decoder model (encoder plus decoder with "
                                   "past key values) is not implemented yet; EG409/EG410 ran in PyTorch")
            return
        if not self.options.onnx_enabled:
            self.out.skip("EG408", "ONNX checks turned off (--no-onnx): no exported runtime to decode with")
            return
        from evalguard.checks.generation import onnx_step
        from evalguard.checks.onnx import runtime as onnx_runtime

        with tempfile.TemporaryDirectory(prefix="evalguard-generate-", ignore_cleanup_errors=True) as tmp:
            path = f"{tmp}/decoder_with_past.onnx"
            try:
                self.export_seconds = onnx_step.export(self.model, path)
                shapes = onnx_step.cache_shapes(self.model)
                session = onnx_runtime.session(path, label=" for generation")
            except Exception as exc:  # noqa: BLE001 - an architecture the step export cannot capture
                self.out.skip("EG408", f"the decoder step with its KV cache could not be exported to ONNX: "
                                       f"{type(exc).__name__}: {_first_line(exc)}")
                return
            self.runtime = "onnxruntime (CPU), decoder step with past key values (TorchScript export)"
            self._decode("EG408", "ONNX Runtime decoding the exported step",
                         lambda: [onnx_step.greedy(session, shapes, p, self.steps) for p in self.prompts])

    def _decode(self, rule: str, what: str, make) -> None:
        """Run the other side's decodes and judge them; one that raises leaves the rule skipped."""
        from evalguard.checks.onnx.console import quiet

        try:
            with quiet():
                others = make()
        except Exception as exc:  # noqa: BLE001 - the model (or runtime) fails on this path: say so
            self.out.skip(rule, f"{what} failed: {type(exc).__name__}: {_first_line(exc)}")
            return
        self._judge(rule, others)

    def _judge(self, rule: str, others) -> None:
        from evalguard.checks.generation import decode

        first = 1 if decode.encoder_decoder(self.model) else None   # after the decoder's start token
        rows = [decode.compare(rule, f"{WHAT[rule]} vs {REFERENCE}", i, len(p), ref, other, self.atol, self.rtol,
                               first)
                for i, (p, ref, other) in enumerate(zip(self.prompts, self.reference, others))]
        self.comparisons += rows
        self.out.ran(rule)
        for row in rows:
            if row.status == TIE:
                d = row.first_divergence
                self.notes.append(f"{rule} prompt {row.prompt}: token {d.expected_token} vs {d.actual_token} at "
                                  f"step {d.step} with every logit within tolerance (a near-tie), not a finding")
        bad = [row for row in rows if row.status == DIFFERS]
        if bad:
            self.out.add(Finding(rule, _message(rule, bad, self.steps), Location(self.subject.path),
                                 _evidence(bad)))

    def _done(self) -> None:
        self.out.fact(GenerationFacts(
            self.steps, tuple(f"prompt {i}: {len(p)} tokens" for i, p in enumerate(getattr(self, "prompts", ()))),
            self.runtime, self.export_seconds, tuple(self.comparisons), tuple(self.notes)))


def _message(rule: str, bad, steps: int) -> str:
    first = bad[0]
    where = (f"the greedy tokens part at step {first.first_divergence.step} (position "
             f"{first.first_divergence.position}: token {first.first_divergence.actual_token} instead of "
             f"{first.first_divergence.expected_token})" if first.first_divergence
             else f"the {steps} greedy tokens still agree")
    worst = max(d for row in bad for d in row.max_abs_diff)
    lead = {"EG408": "Greedy decoding in the exported runtime (ONNX Runtime with its KV cache) differs from eager "
                     "PyTorch",
            "EG409": "Decoding with the KV cache differs from decoding without it, in PyTorch itself",
            "EG410": "Left-padded batched prompts decode differently from each prompt alone"}[rule]
    return (f"{lead}: prompt {first.prompt} ({first.prompt_length} tokens): logits beyond tolerance from step "
            f"{first.first_failing_step} (max abs diff {worst:.3g}, atol {first.atol:g}, rtol {first.rtol:g}); "
            f"{where}" + (f"; {len(bad)} of the prompts differ" if len(bad) > 1 else ""))


def _evidence(bad) -> dict:
    import dataclasses

    from evalguard.reporters.json_report import jsonable

    return jsonable({"comparisons": [dataclasses.asdict(row) for row in bad]})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""
