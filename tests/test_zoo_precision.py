"""Zoo lane, precision: float16/bfloat16 decoders (GPT-2, Llama) from tiny configs, saved with
``save_pretrained`` and audited as folders. Clean ones pass ONNX parity in their own precision
(float16: the file evalguard exports loads in ONNX Runtime; bfloat16: compared in float32, see
``checks/onnx/precision.py``); a stale float16 export is EG401 for its outputs, not for a file
ONNX Runtime cannot load.
"""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.zoo
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

DECODERS = {
    "gpt2": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=99, n_embd=32, n_layer=2, n_head=2, n_positions=64)),
    "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64, num_key_value_heads=1)),
}


def save(family: str, dtype, folder, scale: float = 1.0):
    torch.manual_seed(0)
    model = DECODERS[family]().to(dtype).eval()
    if scale != 1.0:   # the weights moved on after an export
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(scale)
    model.save_pretrained(folder)
    return model


def audit(run_cli, *args):
    code, out, err = run_cli("check", *args, "--format", "json")
    return code, (json.loads(out) if out.strip() else {}), err


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("family", sorted(DECODERS))
def test_half_precision_decoder_audits_clean_with_onnx_parity(family, dtype, tmp_path, run_cli):
    save(family, getattr(torch, dtype), tmp_path / family)
    code, report, err = audit(run_cli, tmp_path / family)
    assert code == 0, err
    assert [f for f in report["findings"] if f["severity"] in ("warning", "error")] == []
    [target] = report["targets"]
    assert target["coverage"]["EG401"]["status"] == "passed"
    assert target["coverage"]["EG104"]["status"] == "passed"
    parity = target["facts"]["onnx"]["parity"]
    assert parity and all(row["passed"] for row in parity)
    if dtype == "float16":   # compared in float16, as deployed
        assert {row["dtype"] for row in parity} == {"float16"}


def test_stale_float16_export_is_eg401_for_its_outputs(tmp_path, run_cli):
    save("gpt2", torch.float16, tmp_path / "old")
    code, _, err = audit(run_cli, tmp_path / "old", "--select", "EG4", "--keep-onnx", tmp_path / "onnx")
    assert code == 0, err
    [kept] = list((tmp_path / "onnx").glob("*.onnx"))
    save("gpt2", torch.float16, tmp_path / "new", scale=1.5)
    code, report, err = audit(run_cli, tmp_path / "new", "--select", "EG401", "--onnx", kept)
    assert code == 1, err
    [finding] = [f for f in report["findings"] if f["rule"] == "EG401"]
    assert "outputs differ from the eval-mode PyTorch model" in finding["message"]
    assert "cannot load" not in finding["message"]


def test_unloadable_float16_file_names_the_exporter_and_the_fix():
    """ORT's refusal of a TorchScript float16 export (a type clash) gets the cause and the fix;
    other models and other load errors get no hint."""
    from evalguard.checks.onnx.precision import load_hint

    clash = ("Load model failed:Type Error: Type parameter (T) of Optype (LayerNormalization) bound to "
             "different types (tensor(float) and tensor(float16)")
    half = torch.nn.Linear(2, 2).half()
    assert "re-export with dynamo=True" in load_hint(half, clash)
    assert load_hint(torch.nn.Linear(2, 2), clash) == ""
    assert load_hint(half, "Protobuf parsing failed") == ""
