"""Issue 25 item 9 (class side): int8/fp16 models from ``quantize_dynamic``, saved whole, load
and audit with no security finding; the packed-weight ``ScriptObject`` they carry may name only
torch's quantized packed-params classes."""
from __future__ import annotations

import json
import warnings

import payloads as P
import pytest
import torch
from torch import nn

from evalguard.errors import RefusedTarget
from evalguard.loading import load_target
from evalguard.subject import AuditOptions

SECURITY_RULES = {"EG900", "EG901", "EG902", "EG904", "EG905"}


def quantized(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "lstm":
        model, layers = nn.Sequential(nn.LSTM(8, 4)), {nn.LSTM}
    else:
        model, layers = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)), {nn.Linear}
    dtype = torch.float16 if kind == "fp16" else torch.qint8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model.eval(), layers, dtype=dtype)


@pytest.mark.parametrize("kind", ["int8-linear", "fp16", "lstm"])
def test_quantize_dynamic_model_saved_whole_loads_as_saved(tmp_path, kind, as_worker):
    model = quantized(kind)
    path = tmp_path / f"{kind}.pt"
    torch.save(model, path)
    subject = load_target(str(path), AuditOptions())
    assert subject.kind == "full-module-pickle"
    x = torch.randn(3, 8) if kind != "lstm" else torch.randn(5, 1, 8)
    with torch.no_grad():
        got, want = subject.model(x), model(x)
    if kind == "lstm":
        got, want = got[0], want[0]
    assert torch.equal(got, want)
    assert type(subject.model[0]).__module__.startswith("torch.ao.nn.quantized.dynamic")


def test_quantized_pickle_is_loaded_in_a_worker_not_in_the_audit_process(tmp_path):
    """Re-packing quantized weights runs torch's native ``__setstate__`` on the file's tensors:
    outside a worker the loader hands the target to one (NeedsWorker) instead of loading it here."""
    from evalguard.errors import NeedsWorker

    path = tmp_path / "int8.pt"
    torch.save(quantized("int8-linear"), path)
    with pytest.raises(NeedsWorker):
        load_target(str(path), AuditOptions())


def test_cli_audits_an_int8_model_with_no_security_finding(tmp_path, run_cli):
    path = tmp_path / "int8.pt"
    torch.save(quantized("int8-linear"), path)
    code, out, err = run_cli("check", path, "--no-onnx", "--input-shape", "2,8", "--format", "json")
    report = json.loads(out)
    assert report["targets"][0]["status"] not in ("refused", "error"), (report["targets"], err[-400:])
    assert not SECURITY_RULES & {f["rule"] for f in report["findings"]}


@pytest.mark.parametrize("name", ["__torch__.torch.classes.evil.Thing", "__torch__.torch.classes.dist_c10d.Work"])
def test_script_object_naming_another_registered_class_is_refused(tmp_path, name):
    body = (P.Asm().glob("torch", "ScriptObject").op("EMPTY_TUPLE").op("NEWOBJ")
            .tuple((), name).op("BUILD").done())
    path = P.torch_save_with_data_pkl(tmp_path, "obj.pt", body)
    with pytest.raises(RefusedTarget) as info:
        load_target(str(path), AuditOptions())
    text = json.dumps([f.evidence for f in info.value.findings])
    assert "EG901" in {f.rule for f in info.value.findings} and "ScriptObject of class" in text


def test_non_module_objects_of_the_quantized_packages_stay_refused():
    from evalguard.loading.allowlist import UNSAFE, AllowList
    from evalguard.loading.pickle_scan import GlobalRef

    ref = GlobalRef("torch.ao.nn.quantized.functional", "linear")
    assert AllowList().decide(ref).status == UNSAFE
    ref = GlobalRef("torch.ao.nn.quantized.dynamic.modules.linear", "torch")   # the module object
    assert AllowList().decide(ref).status == UNSAFE


def test_traced_int8_model_audits_with_the_int8_judgements(tmp_path, run_cli):
    """A traced ``quantize_dynamic`` model is dynamically quantized too: the int8 batch budget and
    the stated ONNX skip apply (the red team's benign traced int8 file got EG104 and EG402)."""
    model = quantized("int8-linear")
    path = tmp_path / "int8_traced.pt"
    torch.jit.trace(model, torch.randn(2, 8)).save(str(path))
    code, out, err = run_cli("check", path, "--input-shape", "2x8", "--format", "json")
    report = json.loads(out)
    assert report["targets"][0]["status"] == "audited", err[-400:]
    assert [f["rule"] for f in report["findings"]] == []
    assert "dynamically quantized" in report["targets"][0]["coverage"]["EG401"]["reason"]
