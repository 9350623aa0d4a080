"""bfloat16 and float16 models: tolerances chosen per dtype, stated in the evidence.

Small Llama-style decoders from a config (random weights, eval mode), saved as sharded
safetensors the way ``save_pretrained`` writes them, must audit clean; the same models with a
planted bug (dropout always on, a stale ONNX file) must still fail.
"""
from __future__ import annotations

import json

import pytest
import torch

import evalguard
from evalguard.checks.eval_mode.compare import (
    BATCH_TOLERANCE_FACTOR,
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    Tolerance,
    compute_dtype,
)
from evalguard.findings import Severity

transformers = pytest.importorskip("transformers")

LOW = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def llama(dtype: torch.dtype, seed: int = 0):
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(config).to(dtype).eval()


@pytest.fixture(scope="module", params=sorted(LOW))
def folder(request, tmp_path_factory):
    """(dtype name, a sharded bf16/fp16 save_pretrained folder)."""
    path = tmp_path_factory.mktemp(request.param)
    llama(LOW[request.param]).save_pretrained(path, max_shard_size="100KB")
    assert (path / "model.safetensors.index.json").is_file()   # really sharded
    return request.param, path


def ids(batch: int = 2, length: int = 8):
    generator = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(3, 256, (batch, length), generator=generator),
            "attention_mask": torch.ones(batch, length, dtype=torch.long)}


# --- tolerances ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(LOW))
def test_low_precision_defaults_are_scaled_from_eps(name):
    dtype = LOW[name]
    eps = torch.finfo(dtype).eps
    same, batch = Tolerance.paired({}, dtype)
    assert (same.atol, same.rtol) == pytest.approx((eps, 2 * eps))
    assert batch.atol == pytest.approx(4 * eps) and batch.rtol == pytest.approx(8 * eps)
    assert same.as_evidence()["dtype"] == name


def test_float32_keeps_its_defaults_and_user_tolerances_win():
    same, batch = Tolerance.paired({}, torch.float32)
    assert (same.atol, same.rtol) == (DEFAULT_ATOL, DEFAULT_RTOL)
    assert batch.atol == pytest.approx(DEFAULT_ATOL * BATCH_TOLERANCE_FACTOR)
    assert same.as_evidence() == {"atol": DEFAULT_ATOL, "rtol": DEFAULT_RTOL, "dtype": "float32"}
    configured, _ = Tolerance.paired({"atol": 1e-3}, torch.bfloat16)
    assert configured.atol == 1e-3                        # as given, not the bfloat16 default
    assert configured.rtol == pytest.approx(2 * torch.finfo(torch.bfloat16).eps)


def test_compute_dtype_is_the_least_precise_parameter_dtype():
    mixed = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2).to(torch.bfloat16))
    assert compute_dtype(mixed) == torch.bfloat16
    assert compute_dtype(torch.nn.Linear(2, 2).half()) == torch.float16
    assert compute_dtype(torch.nn.ReLU()) == torch.float32


# --- whole audits ------------------------------------------------------------------------------

def test_low_precision_folder_audits_clean_with_its_dtype_stated(folder, run_cli, tmp_path):
    name, path = folder
    report = tmp_path / "r.json"
    # --input-dtype is about inputs, not parameters: the token ids must stay integers.
    code, out, err = run_cli("check", path, "--input-dtype", name, "--format", "json", "-o", report)
    data = json.loads(report.read_text())
    bad = [f for f in data["findings"] if f["severity"] in ("warning", "error")]
    assert code == 0, (out, err, bad)
    assert bad == []
    target = data["targets"][0]
    assert all(line.startswith(("input_ids: int64", "attention_mask: int64")) for line in target["facts"]["inputs"]["inputs"])
    paired = target["facts"]["eval_mode"]["paired"]
    assert paired["tolerance"]["dtype"] == name
    assert paired["tolerance"]["atol"] == pytest.approx(torch.finfo(LOW[name]).eps, rel=1e-2)
    assert paired["batch_tolerance"]["dtype"] == name
    coverage = target["coverage"]
    for rule in ("EG102", "EG103", "EG104", "EG401", "EG404"):
        assert coverage[rule]["status"] == "passed", (rule, coverage[rule])
    parity = target["facts"]["onnx"]["parity"]
    assert parity and all(row["passed"] for row in parity)
    # bfloat16: compared in float32 (ONNX Runtime CPU has no bfloat16 kernels), and said so;
    # float16: run as it is, with the float16 tolerance.
    assert {row["dtype"] for row in parity} == ({"float32"} if name == "bfloat16" else {"float16"})
    notes = " ".join(target["facts"]["onnx"].get("notes") or [])
    assert ("bfloat16 model" in notes) == (name == "bfloat16")


class Logits(torch.nn.Module):
    """The decoder's logits alone; with ``always_dropout`` a planted bug: dropout that ignores eval()."""

    def __init__(self, inner, always_dropout: bool = False):
        super().__init__()
        self.inner, self.always_dropout = inner, always_dropout

    def forward(self, input_ids, attention_mask):
        logits = self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        return torch.nn.functional.dropout(logits, 0.1, training=True) if self.always_dropout else logits


@pytest.mark.parametrize("name", sorted(LOW))
def test_dropout_always_on_still_fails_in_low_precision(name):
    report = evalguard.audit(Logits(llama(LOW[name]), always_dropout=True).eval(), ids(), select=["EG103"])
    found = [f for f in report.findings if f.rule == "EG103"]
    assert found and found[0].severity == Severity.ERROR
    assert found[0].evidence["tolerance"]["dtype"] == name


@pytest.mark.parametrize("name", sorted(LOW))
def test_stale_onnx_file_still_fails_in_low_precision(name, tmp_path):
    stale = tmp_path / "stale.onnx"
    old = Logits(llama(torch.float32, seed=7))   # the file was exported from other weights
    inputs = ids()
    torch.onnx.export(old, (inputs["input_ids"], inputs["attention_mask"]), str(stale),
                      input_names=["input_ids", "attention_mask"], output_names=["output"], dynamo=False)
    model = Logits(llama(LOW[name])).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = evalguard.audit(model, ids(), onnx_file=str(stale), select=["EG401"])
    assert [f.rule for f in report.findings if f.severity == Severity.ERROR] == ["EG401"]
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())


def test_bfloat16_model_is_put_back_after_the_onnx_check():
    from evalguard.checks.onnx.precision import float32_reference

    model = llama(torch.bfloat16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with float32_reference(model) as upcast:
        assert upcast
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert model.lm_head.weight is model.model.embed_tokens.weight or not model.config.tie_word_embeddings
    after = model.state_dict()
    assert all(after[k].dtype == torch.bfloat16 and torch.equal(after[k], v)
               for k, v in before.items() if v.dtype == torch.bfloat16)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), None])
def test_finite_check_without_temporaries_sees_nan_and_inf_in_every_dtype(dtype, bad):
    from evalguard.checks.architecture.static import _all_finite

    data = torch.randn(64, 33).to(dtype).t()          # non-contiguous too
    if bad is not None:
        data[5, 7] = bad
    assert _all_finite(data) == (bad is None)
