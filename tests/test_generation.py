"""Generation parity (--generate N, EG408-EG410): the step comparison, when the family runs, and
what its facts say. The rules' bad/good examples run through tests/test_rule_examples.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from evalguard.checks.generation.decode import Decode, compare
from evalguard.checks.generation.facts import DIFFERS, MATCHES, TIE, GenerationFacts
from evalguard.facts import from_json, to_json

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "rules"
GENERATION = ("EG408", "EG409", "EG410")


def decode(tokens, rows):
    return Decode(list(tokens), [torch.tensor(r, dtype=torch.float32) for r in rows])


def test_equal_decodes_match_with_a_difference_per_step():
    ref = decode([1, 0], [[0.0, 1.0], [1.0, 0.0]])
    row = compare("EG409", "a vs b", 0, 5, ref, decode([1, 0], [[0.0, 1.0 + 2 ** -20], [1.0, 0.0]]), 1e-4, 1e-3)
    assert row.status == MATCHES and row.first_divergence is None and row.first_failing_step is None
    assert row.steps == 2 and row.max_abs_diff == pytest.approx((2 ** -20, 0.0), rel=1e-5)


def test_a_near_tie_that_flips_a_token_is_a_tie_not_a_difference():
    ref = decode([1, 0], [[0.50000, 0.50001], [1.0, 0.0]])
    other = decode([0, 1], [[0.50001, 0.50000], [0.0, 1.0]])
    row = compare("EG408", "a vs b", 1, 5, ref, other, 1e-4, 1e-3)
    assert row.status == TIE
    assert (row.first_divergence.step, row.first_divergence.position) == (0, 5)
    assert row.steps == 1   # nothing after the tokens part is compared: the contexts differ


def test_logits_beyond_tolerance_differ_from_the_first_failing_step_to_the_divergence():
    ref = decode([1, 1, 1], [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    other = decode([1, 1, 0], [[0.0, 1.0], [0.0, 0.8], [0.0, -1.0]])
    row = compare("EG409", "a vs b", 0, 8, ref, other, 1e-4, 1e-3)
    assert row.status == DIFFERS and row.first_failing_step == 1
    d = row.first_divergence
    assert (d.step, d.position, d.expected_token, d.actual_token) == (2, 10, 1, 0)
    assert row.max_abs_diff == pytest.approx((0.0, 0.2, 2.0))


def test_facts_round_trip_through_json():
    ref = decode([1, 0], [[0.0, 1.0], [1.0, 0.0]])
    row = compare("EG410", "a vs b", 0, 5, ref, decode([0, 0], [[1.0, 0.0], [1.0, 0.0]]), 1e-4, 1e-3)
    facts = GenerationFacts(8, ("prompt 0: 5 tokens",), "onnxruntime", 0.5, (row,), ("a note",))
    assert from_json(GenerationFacts, json.loads(json.dumps(to_json(facts)))) == facts


def _coverage(report) -> dict:
    [target] = report["targets"]
    return {rule: target["coverage"][rule] for rule in GENERATION}


def test_generation_is_off_without_the_flag(run_cli, tmp_path):
    factory = tmp_path / "m.py"
    factory.write_text("import torch\ndef build_model():\n    return torch.nn.Linear(4, 2).eval()\n")
    code, out, err = run_cli("check", "--model", f"{factory}:build_model", "--input-shape", "2x4", "--no-onnx",
                             "--format", "json")
    assert code == 0, err
    for run in _coverage(json.loads(out)).values():
        assert run["status"] == "not-applicable" and "--generate N" in run["reason"]


def test_a_model_that_does_not_generate_is_skipped_with_the_reason(run_cli, tmp_path):
    factory = tmp_path / "m.py"
    factory.write_text("import torch\ndef build_model():\n    return torch.nn.Linear(4, 2).eval()\n")
    code, out, err = run_cli("check", "--model", f"{factory}:build_model", "--input-shape", "2x4", "--no-onnx",
                             "--generate", "4", "--format", "json")
    assert code == 0, err
    for run in _coverage(json.loads(out)).values():
        assert run["status"] == "skipped" and "generates" in run["reason"]


def test_a_negative_token_count_is_a_usage_error(run_cli):
    code, _, err = run_cli("check", "--model", "x.py:f", "--generate", "-1")
    assert code == 2 and err.startswith("error:") and "--generate" in err


@pytest.mark.realmodel
def test_an_encoder_decoder_runs_the_pytorch_rules_and_says_why_eg408_did_not():
    from transformers import T5Config, T5ForConditionalGeneration

    from evalguard.checks.generation.check import run
    from evalguard.subject import AuditOptions, AuditSubject

    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(vocab_size=64, d_model=16, d_ff=32, num_layers=1, num_heads=2,
                                                d_kv=8)).eval()
    outcome = run(AuditSubject("t5", "live-module", model=model),
                  AuditOptions(selected=frozenset(GENERATION), generate=4))
    assert not outcome.findings
    assert outcome.coverage["EG408"].status == "skipped" and "encoder-decoder" in outcome.coverage["EG408"].reason
    assert outcome.coverage["EG409"].status == outcome.coverage["EG410"].status == "ran"
    [facts] = outcome.facts
    assert {(row.rule, row.prompt) for row in facts.comparisons} == {(r, p) for r in ("EG409", "EG410")
                                                                      for p in (0, 1)}
    assert all(row.status in ("matches", "tie") for row in facts.comparisons)


@pytest.mark.realmodel
def test_a_clean_llama_reports_every_step_of_every_comparison(run_cli):
    """The product path on the EG408 good example: three comparisons per prompt, N steps each,
    all within tolerance, the runtime named, the facts in the JSON report."""
    code, out, err = run_cli("check", "--model", f"{EXAMPLES / 'EG408' / 'good.py'}:build_model", "--generate", "6",
                             "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert all(run["status"] == "passed" for run in _coverage(report).values())
    facts = report["targets"][0]["facts"]["generation"]
    assert facts["steps"] == 6 and "onnxruntime" in facts["runtime"] and facts["export_seconds"] > 0
    rows = facts["comparisons"]
    assert sorted({(r["rule"], r["prompt"]) for r in rows}) == [(rule, p) for rule in GENERATION for p in (0, 1)]
    for row in rows:
        assert row["status"] in ("matches", "tie")
        if row["status"] == "matches":
            assert row["steps"] == 6 and len(row["max_abs_diff"]) == 6 and max(row["max_abs_diff"]) < 1e-4


@pytest.mark.realmodel
def test_the_planted_cache_bug_is_located_at_the_first_cached_step(run_cli):
    code, out, err = run_cli("check", "--model", f"{EXAMPLES / 'EG409' / 'bad.py'}:build_model", "--generate", "8",
                             "--no-onnx", "--format", "json")
    assert code == 1, err
    report = json.loads(out)
    [finding] = [f for f in report["findings"] if f["rule"] == "EG409"]
    rows = finding["evidence"]["comparisons"]
    # the prompt pass fills the cache correctly: step 0 matches, the first cached step (1) is wrong
    assert all(r["first_failing_step"] == 1 and r["max_abs_diff"][0] < 1e-4 for r in rows)
    assert "from step 1" in finding["message"]


@pytest.mark.realmodel
def test_a_clean_gpt2_decodes_the_same_in_onnx_runtime_with_its_cache():
    """A second architecture (learned absolute positions, Conv1D projections) through EG408."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from evalguard.checks.generation.check import run
    from evalguard.subject import AuditOptions, AuditSubject

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64)).eval()
    outcome = run(AuditSubject("gpt2", "live-module", model=model),
                  AuditOptions(selected=frozenset({"EG408"}), generate=8))
    assert outcome.coverage["EG408"].status == "ran" and not outcome.findings
    [facts] = outcome.facts
    assert [row.prompt for row in facts.comparisons] == [0, 1]
    assert all(max(row.max_abs_diff) < 1e-4 for row in facts.comparisons)


@pytest.mark.realmodel
def test_a_half_precision_llama_runs_the_pytorch_rules_and_says_why_eg408_did_not():
    from transformers import LlamaConfig, LlamaForCausalLM

    from evalguard.checks.generation.check import run
    from evalguard.subject import AuditOptions, AuditSubject

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=64)).to(torch.float16).eval()
    outcome = run(AuditSubject("llama16", "live-module", model=model),
                  AuditOptions(selected=frozenset(GENERATION), generate=4))
    assert outcome.coverage["EG408"].status == "skipped" and "float32" in outcome.coverage["EG408"].reason
    assert outcome.coverage["EG409"].status == outcome.coverage["EG410"].status == "ran"
    [facts] = outcome.facts
    assert {row.atol for row in facts.comparisons} == {1e-2}   # float16 logits get float16 tolerances
    assert not outcome.findings


@pytest.mark.realmodel
def test_an_export_that_passes_one_forward_pass_fails_generation_from_the_first_cached_step(run_cli):
    """The EG408 bad example: EG401 (one forward pass, no cache, as Optimum's validation) passes,
    and the exported decoder with its cache differs from the first step that reads the cache."""
    code, out, err = run_cli("check", "--model", f"{EXAMPLES / 'EG408' / 'bad.py'}:build_model", "--generate", "8",
                             "--format", "json")
    assert code == 1, err
    report = json.loads(out)
    [target] = report["targets"]
    assert target["coverage"]["EG401"]["status"] == "passed"
    assert _coverage(report)["EG409"]["status"] == _coverage(report)["EG410"]["status"] == "passed"
    [finding] = report["findings"]
    assert finding["rule"] == "EG408"
    for row in finding["evidence"]["comparisons"]:
        assert row["first_failing_step"] == 1 and row["max_abs_diff"][0] < 1e-4
