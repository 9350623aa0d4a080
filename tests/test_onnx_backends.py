"""The backend parity matrix (--backends, EG406/EG407): each backend against eager PyTorch.

TorchScript and ort-optimized build in well under a second; torch.compile and AOTInductor
compile C++ (tens of seconds on a small machine), so their tests carry the ``compiler`` marker.
"""
from __future__ import annotations

import json

import pytest
import torch
from test_onnx_parity import audit
from torch import nn

from evalguard.checks.onnx import BACKENDS, parse_backends
from evalguard.facts import OnnxFacts, from_json, to_json

MATRIX = frozenset({"EG406", "EG407"})


class TraceOnly(nn.Module):
    """Scales its hidden layer by 1.01 only while being traced (torch.jit.trace)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 4)

    def forward(self, x):
        h = self.a(x)
        if torch.jit.is_tracing():
            h = h * 1.01
        return self.b(h)


class CompileOnly(TraceOnly):
    """The same difference, only while torch.compile / torch.export capture the model."""

    def forward(self, x):
        h = self.a(x)
        if torch.compiler.is_compiling():
            h = h * 1.01
        return self.b(h)


class DataDependent(nn.Module):
    """Python control flow on a tensor's value: torch.export cannot capture it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(8, 4)

    def forward(self, x):
        if x.abs().sum() > 0:
            return self.a(x)
        return self.a(-x)


@pytest.fixture(scope="module")
def x():
    return torch.randn(4, 8, generator=torch.Generator().manual_seed(2))


def by_backend(seen) -> dict:
    return {b.backend: b for b in seen.backends}


def test_parse_backends_keeps_order_drops_repeats_and_rejects_unknown_names():
    assert parse_backends(None) == ("onnxruntime",)
    assert parse_backends("torchscript, onnxruntime,torchscript") == ("torchscript", "onnxruntime")
    assert set(BACKENDS) == {"onnxruntime", "ort-optimized", "torch-compile", "aoti", "torchscript", "openvino",
                            "openvino-onnx", "ort-int8", "executorch"}
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        parse_backends("onnxruntime,tensorrt")


def test_unknown_backend_is_a_usage_error(run_cli):
    code, _, err = run_cli("check", "--model", "x.py:f", "--backends", "onnxruntime,tvm")
    assert code == 2
    known = "onnxruntime, ort-optimized, torch-compile, aoti, torchscript, openvino, openvino-onnx, ort-int8, executorch"
    assert err.strip().splitlines() == [f"error: --backends: unknown backend 'tvm' (known: {known})"]


def test_default_runs_no_backend_and_says_so(x):
    findings, seen = audit(TraceOnly(), x, rules=MATRIX)
    assert findings == [] and seen.backends == ()
    for rule in MATRIX:
        run = seen.outcome.coverage[rule]
        assert run.status == "not-applicable" and "only the onnxruntime backend" in run.reason


def test_trace_only_difference_gives_eg406_for_torchscript(x):
    findings, seen = audit(TraceOnly(), x, rules=MATRIX, backends=("onnxruntime", "torchscript"))
    [finding] = findings
    assert finding.rule == "EG406"
    assert finding.message.startswith("the torchscript backend's outputs differ from eager PyTorch")
    assert finding.evidence["backend"] == "torchscript"
    assert {r["batch"] for r in finding.evidence["outputs"]} == {4, 3}   # the example and one fewer
    json.dumps(finding.evidence)
    table = by_backend(seen)
    assert list(table) == ["eager", "torchscript"]   # no ONNX rule selected: no EG401 session to time
    assert table["torchscript"].status == "differs"
    assert table["torchscript"].max_abs_diff > 1e-3
    for name in ("eager", "torchscript"):
        assert set(table[name].latency_ms) == {"4", "3"} and all(v > 0 for v in table[name].latency_ms.values())
    assert seen.outcome.coverage["EG406"].status == "ran"
    # the table is part of the JSON report and reads back
    assert from_json(OnnxFacts, json.loads(json.dumps(to_json(seen.facts)))).backends == seen.backends


def test_matching_backends_are_tabled_with_latencies_and_raise_nothing(x):
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
    rules = MATRIX | {"EG401", "EG402", "EG404"}
    findings, seen = audit(model, x, rules=rules, backends=("onnxruntime", "ort-optimized", "torchscript"))
    assert findings == []
    table = by_backend(seen)
    assert list(table) == ["eager", "onnxruntime", "ort-optimized", "torchscript"]
    assert [table[n].status for n in ("onnxruntime", "ort-optimized", "torchscript")] == ["matches"] * 3
    # ort-optimized compares the optimised and the plain session, at both batch sizes
    comparisons = {(r["comparison"], r["batch"]) for r in table["ort-optimized"].rows}
    assert comparisons == {(c, b) for c in ("ort-optimized vs torch-cpu", "ort-plain vs torch-cpu") for b in (4, 3)}
    assert all(set(table[n].latency_ms) == {"4", "3"} for n in table)


def test_ort_optimized_leaves_a_wrong_file_to_eg401(x):
    """Both ORT sessions differ from PyTorch: the file is wrong (EG401), not the optimisations."""

    class ExportOnly(TraceOnly):
        def forward(self, x):
            h = self.a(x)
            if torch.onnx.is_in_onnx_export():
                h = h + 1
            return self.b(h)

    findings, seen = audit(ExportOnly(), x, rules=MATRIX | {"EG401"}, backends=("ort-optimized",))
    assert [f.rule for f in findings] == ["EG401"]
    assert by_backend(seen)["ort-optimized"].status == "file differs (EG401)"


def test_ort_optimized_needs_an_onnx_file(x):
    """Only the matrix selected: the file is still exported for ort-optimized."""
    findings, seen = audit(TraceOnly(), x, rules=MATRIX, backends=("ort-optimized",))
    assert findings == []
    assert by_backend(seen)["ort-optimized"].status == "file differs (EG401)"   # traced: the file has it too


def test_backend_failing_at_the_second_batch_is_eg407(x, monkeypatch):
    """A backend that builds but rejects another batch size: EG407 with the batch size."""
    from evalguard.checks.onnx import backends as onnx_backends

    original = onnx_backends._BUILDERS["torchscript"]

    def fixed_batch(flat, spec, onnx_path, workdir, device):
        run, plain, notes = original(flat, spec, onnx_path, workdir, device)

        def checked(tensors):
            if tensors[0].shape[0] != spec.batch():
                raise RuntimeError(f"expected batch {spec.batch()}")
            return run(tensors)
        return checked, plain, notes

    monkeypatch.setitem(onnx_backends._BUILDERS, "torchscript", fixed_batch)
    findings, seen = audit(nn.Linear(8, 4), x, rules=MATRIX, backends=("torchscript",))
    [finding] = findings
    assert finding.rule == "EG407" and finding.evidence["batch"] == 3
    assert "builds but fails at batch size 3: RuntimeError: expected batch 4" in finding.message
    assert by_backend(seen)["torchscript"].status == "run failed"


def test_data_dependent_control_flow_cannot_build_for_aoti(x):
    """torch.export fails before any compiling: EG407 names the cause; the other backends still run."""
    findings, seen = audit(DataDependent(), x, rules=MATRIX, backends=("aoti", "torchscript"))
    [finding] = findings
    assert finding.rule == "EG407" and finding.evidence["backend"] == "aoti"
    assert "data-dependent" in finding.message
    table = by_backend(seen)
    assert table["aoti"].status == "build failed" and table["aoti"].latency_ms == {}
    assert table["torchscript"].status == "matches"


@pytest.mark.compiler
def test_compile_only_difference_gives_eg406_for_torch_compile_and_aoti(x):
    findings, seen = audit(CompileOnly(), x, rules=MATRIX, backends=("torch-compile", "aoti", "torchscript"))
    assert sorted((f.rule, f.evidence["backend"]) for f in findings) == [("EG406", "aoti"), ("EG406", "torch-compile")]
    table = by_backend(seen)
    assert table["torchscript"].status == "matches"
    assert table["torch-compile"].build_seconds > 0
    assert all(set(table[n].latency_ms) == {"4", "3"} for n in ("torch-compile", "aoti"))


class EulerBlock(nn.Module):
    """32 Euler steps of dx/dt = tanh(x): a long chain of elementwise ops and no code path that
    differs between backends. In float16, eager PyTorch rounds after every op; Inductor fuses
    the chain into one kernel that computes in float32 and rounds once."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.full((256,), 3.0))

    def forward(self, x):
        x = x * self.scale
        for _ in range(32):
            x = x + 0.01 * torch.tanh(x)
        return x


@pytest.mark.compiler
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_inductor_fusing_a_float16_chain_is_a_real_compile_only_difference(dtype):
    """Measured on this CPU: float16 max abs error 0.0703 on outputs up to 12.6 (about 10% of
    elements outside atol/rtol 1e-2) at both batch sizes; float32: 0. TorchScript runs eager's
    kernels and matches. (ONNX Runtime's CPU provider computes float16 Tanh through float32
    casts too, so the same float16 model also gives EG401 when the ONNX rules are selected.)"""
    x = torch.randn(4, 256, generator=torch.Generator().manual_seed(0)).to(dtype)
    findings, seen = audit(EulerBlock().to(dtype).eval(), x, rules=MATRIX,
                           backends=("torch-compile", "torchscript"))
    table = by_backend(seen)
    assert table["torchscript"].status == "matches" and table["torchscript"].max_abs_diff == 0.0
    if dtype == torch.float32:
        assert findings == [] and table["torch-compile"].status == "matches"
        return
    [finding] = findings
    assert finding.rule == "EG406" and finding.evidence["backend"] == "torch-compile"
    assert {r["batch"] for r in finding.evidence["outputs"] if not r["passed"]} == {4, 3}
    assert table["torch-compile"].status == "differs" and table["torch-compile"].max_abs_diff > 1e-2


@pytest.mark.compiler
def test_bfloat16_model_is_built_in_bfloat16_and_ort_optimized_runs_the_float32_copy():
    """The ONNX rules upcast a bfloat16 model (ONNX Runtime CPU has no bfloat16 kernels); the
    compilers must still build the bfloat16 model that is served. Measured: torch-compile max abs
    error 0.375, 54% of elements out of bfloat16's tolerances; the float32 copy in ONNX Runtime 1e-6."""
    x = torch.randn(4, 256, generator=torch.Generator().manual_seed(0)).bfloat16()
    model = EulerBlock().bfloat16().eval()
    findings, seen = audit(model, x, rules=MATRIX | {"EG401"}, backends=("torch-compile", "torchscript", "ort-optimized"))
    assert [(f.rule, f.evidence["backend"]) for f in findings] == [("EG406", "torch-compile")]
    table = by_backend(seen)
    assert {r["dtype"] for r in table["torch-compile"].rows} == {"bfloat16"}
    assert table["torchscript"].status == "matches" and {r["dtype"] for r in table["torchscript"].rows} == {"bfloat16"}
    assert table["ort-optimized"].status == "matches"
    assert {r["dtype"] for r in table["ort-optimized"].rows} == {"float32"}
    assert model.scale.dtype == torch.bfloat16   # put back after both conversions
    assert any("built from the bfloat16 model" in note for note in seen.notes)


@pytest.mark.compiler
def test_emulating_eager_rounding_in_inductor_removes_the_float16_difference():
    """The difference is Inductor skipping the intermediate roundings: with its
    emulate_precision_casts option the compiled float16 chain matches eager exactly."""
    import torch._inductor.config as inductor_config

    x = torch.randn(4, 256, generator=torch.Generator().manual_seed(0)).half()
    with inductor_config.patch(emulate_precision_casts=True):   # monkeypatch's undo breaks the config module
        findings, seen = audit(EulerBlock().half().eval(), x, rules=MATRIX, backends=("torch-compile",))
    assert findings == []
    assert by_backend(seen)["torch-compile"].max_abs_diff == 0.0


def test_html_backend_table_has_a_row_and_latency_bars_per_backend(x):
    from dataclasses import replace
    from html.parser import HTMLParser

    from evalguard.findings import Report, Severity, TargetResult
    from evalguard.reporters import render

    findings, seen = audit(TraceOnly(), x, rules=MATRIX, backends=("torchscript",))
    findings = [replace(f, severity=Severity.ERROR) for f in findings]   # the engine's job
    target = TargetResult("m.py", "factory", "audited", "", {}, {"onnx": seen.facts})
    html = render(Report((target,), tuple(findings), {}), "html")

    class Bars(HTMLParser):
        def __init__(self):
            super().__init__()
            self.bars, self.text = [], []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "svg" and (attrs.get("aria-label") or "").endswith(" ms"):
                self.bars.append([attrs["aria-label"], None])
            elif tag == "rect" and self.bars and self.bars[-1][1] is None:
                self.bars[-1][1] = int(attrs["width"])

        def handle_data(self, data):
            self.text.append(data)

    page = Bars()
    page.feed(html)
    # eager and torchscript, at batch 4 and 3 each
    assert [label.split(":")[0] for label, _ in page.bars] == ["eager", "eager", "torchscript", "torchscript"]
    widths = [width for _, width in page.bars]
    assert max(widths[0::2]) == max(widths[1::2]) == 120 and min(widths) >= 1   # scaled per batch size
    text = " ".join(" ".join(page.text).split())
    assert "Deployment backends vs eager PyTorch" in text
    assert "Median latency, batch 4" in text and "Median latency, batch 3" in text
    assert "✗ differs" in text and "reference" in text


def test_backends_from_pyproject_config(tmp_path, run_cli):
    """[tool.evalguard] backends works like --backends, and a bad name there is a usage error."""
    model = tmp_path / "model.py"
    model.write_text("from torch import nn\n\ndef build_model():\n    return nn.Linear(8, 4).eval()\n")
    config = tmp_path / "pyproject.toml"
    config.write_text('[tool.evalguard]\nbackends = "onnxruntime,torchscript"\nselect = ["EG406", "EG407"]\n')
    code, out, err = run_cli("check", "--model", f"{model}:build_model", "--input-shape", "2x8",
                             "--config", config, "--format", "json")
    assert code == 0, err
    table = json.loads(out)["targets"][0]["facts"]["onnx"]["backends"]
    assert [(row["backend"], row["status"]) for row in table] == [("eager", "reference"), ("torchscript", "matches")]
    config.write_text('[tool.evalguard]\nbackends = "onnxruntime,xla"\n')
    code, _, err = run_cli("check", "--model", f"{model}:build_model", "--config", config)
    assert code == 2 and err.startswith("error: --backends: unknown backend 'xla'")


@pytest.mark.realmodel
@pytest.mark.compiler
def test_real_tiny_bert_backend_matrix_completes_without_findings():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, vocab_size=100)).eval()
    ids = torch.randint(0, 100, (2, 8))
    findings, seen = audit(model, kwargs={"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                           rules=MATRIX | {"EG401", "EG402", "EG404"},
                           backends=("onnxruntime", "ort-optimized", "aoti", "torchscript"))
    assert findings == [], [(f.rule, f.message) for f in findings]
    table = by_backend(seen)
    assert list(table) == ["eager", "onnxruntime", "ort-optimized", "aoti", "torchscript"]
    assert all(table[n].status == "matches" for n in list(table)[1:])
    assert all(set(table[n].latency_ms) == {"2", "1"} for n in table)


# -- CUDA variants (--device cuda) ---------------------------------------------------------
NO_GPU = "no CUDA GPU visible to PyTorch (torch.cuda.is_available() is False)"
NO_ORT_CUDA = "onnxruntime has no CUDAExecutionProvider (available: CPUExecutionProvider); install onnxruntime-gpu"


def test_variants_add_one_cuda_variant_per_backend_only_with_device_cuda():
    from evalguard.checks.onnx.backends import Variant, variants

    wanted = ["torchscript", "ort-optimized"]
    assert variants(wanted, "cpu") == [Variant("torchscript"), Variant("ort-optimized")]
    assert variants(wanted, "cuda") == [Variant("torchscript"), Variant("ort-optimized"),
                                        Variant("torchscript", "cuda"), Variant("ort-optimized", "cuda")]
    # no GPU: every CUDA variant skips with PyTorch's reason, the CPU ones still run
    assert [(v.label, v.skip_reason) for v in variants(wanted, "cuda", NO_GPU, NO_ORT_CUDA)] == [
        ("torchscript", None), ("ort-optimized", None),
        ("torchscript (cuda)", NO_GPU), ("ort-optimized (cuda)", NO_GPU)]
    # a GPU but a CPU-only onnxruntime (the known GPU image): only ort-optimized's CUDA variant skips
    assert [(v.label, v.skip_reason) for v in variants(wanted, "cuda", None, NO_ORT_CUDA)][2:] == [
        ("torchscript (cuda)", None), ("ort-optimized (cuda)", NO_ORT_CUDA)]


def test_unavailable_reason_without_onnxruntime_asks_only_pytorch(monkeypatch):
    import onnxruntime as ort

    from evalguard.checks.onnx.cuda import unavailable_reason

    assert unavailable_reason("cpu", onnxruntime=False) == "--device is 'cpu'"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert unavailable_reason("cuda", onnxruntime=False) == unavailable_reason("cuda") == NO_GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert unavailable_reason("cuda", onnxruntime=False) is None
    assert unavailable_reason("cuda") == NO_ORT_CUDA


def test_coverage_gap_groups_skipped_variants_by_reason():
    from evalguard.checks.onnx.backends import coverage_gap
    from evalguard.facts import BackendFact

    table = [BackendFact("eager", "reference"), BackendFact("torchscript", "matches"),
             BackendFact("eager", "reference", device="cuda"),
             BackendFact("torchscript", "matches", device="cuda"),
             BackendFact("aoti", "skipped", device="cuda", skip_reason=NO_GPU),
             BackendFact("ort-optimized", "skipped", device="cuda", skip_reason=NO_ORT_CUDA),
             BackendFact("torch-compile", "skipped", device="cuda", skip_reason=NO_GPU)]
    assert coverage_gap(table) == (f"aoti (cuda), torch-compile (cuda) not run: {NO_GPU}; "
                                   f"ort-optimized (cuda) not run: {NO_ORT_CUDA} "
                                   "(the other backends ran: see the backend table)")
    assert coverage_gap(table[:4]) is None


def test_verdict_blames_a_backend_only_for_what_it_changed():
    from evalguard.checks.onnx import compare
    from evalguard.checks.onnx.backends import verdict

    expected = torch.linspace(-1, 1, 16)

    def rows(error, batch=4):
        return [compare.row("y", "y", expected + error, expected, {}, comparison="", batch=batch, histogram=False)]

    assert verdict(rows(1e-6), [], False) == ("matches", [])
    status, bad = verdict(rows(1e-2) + rows(1e-6, batch=3), [], False)
    assert status == "differs" and [r["batch"] for r in bad] == [4]
    assert verdict(rows(1e-2), rows(1e-2), False) == ("file differs (EG401)", [])   # the plain session too
    status, bad = verdict(rows(1e-2), rows(1e-6), False)                            # only the optimised one
    assert status == "differs" and len(bad) == 1
    assert verdict([], [], True) == ("run failed", [])


def test_without_a_gpu_cuda_variants_are_skipped_rows_and_the_rules_are_not_passed(x, monkeypatch):
    """--device cuda where PyTorch sees no GPU: the CPU variants run as always, each CUDA variant
    is a row with status skipped and the reason, no finding, and EG406/EG407 are skipped (not
    passed) with that reason."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)   # also on a GPU machine
    findings, seen = audit(nn.Linear(8, 4), x, rules=MATRIX, backends=("torchscript", "ort-optimized"),
                           device="cuda")
    assert findings == []
    rows = [(b.backend, b.device, b.status, b.skip_reason) for b in seen.backends]
    assert rows == [("eager", "cpu", "reference", None), ("torchscript", "cpu", "matches", None),
                    ("ort-optimized", "cpu", "matches", None),
                    ("torchscript", "cuda", "skipped", NO_GPU), ("ort-optimized", "cuda", "skipped", NO_GPU)]
    for rule in MATRIX:
        run = seen.outcome.coverage[rule]
        assert run.status == "skipped"
        assert run.reason.startswith(f"torchscript (cuda), ort-optimized (cuda) not run: {NO_GPU}")
    # the table reads back from JSON with the device and the reason
    assert from_json(OnnxFacts, json.loads(json.dumps(to_json(seen.facts)))).backends == seen.backends


def test_a_cpu_variant_finding_still_fails_the_rule_when_cuda_variants_skip(x, monkeypatch):
    from evalguard.engine import coverage

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    findings, seen = audit(TraceOnly(), x, rules=MATRIX, backends=("torchscript",), device="cuda")
    assert [f.rule for f in findings] == ["EG406"] and findings[0].evidence["device"] == "cpu"
    result = coverage("factory", MATRIX, findings, seen.outcome.coverage)   # what the engine reports
    assert result["EG406"].status == "failed"
    assert result["EG407"].status == "skipped" and NO_GPU in result["EG407"].reason


def test_html_names_cuda_variants_and_shows_skipped_ones_with_the_reason(x, monkeypatch):
    from evalguard.findings import Report, TargetResult
    from evalguard.reporters import render

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _, seen = audit(nn.Linear(8, 4), x, rules=MATRIX, backends=("torchscript",), device="cuda")
    html = render(Report((TargetResult("m.py", "factory", "audited", "", {}, {"onnx": seen.facts}),), (), {}), "html")
    assert "<code>torchscript (cuda)</code>" in html and "<code>torchscript</code>" in html
    assert '<span class="muted">skipped</span>' in html and NO_GPU in html
    assert "✗ skipped" not in html and "&#10007; skipped" not in html


def _gpu_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to PyTorch: the CUDA variants cannot be built here")


@pytest.mark.cuda
@pytest.mark.compiler
def test_cuda_variants_build_on_the_gpu_and_match_eager_cuda(x):
    """The real CUDA path: every backend built on the GPU, compared with eager PyTorch on CUDA.
    ort-optimized's CUDA variant needs onnxruntime-gpu; without it the row says so."""
    _gpu_or_skip()
    from evalguard.checks.onnx.cuda import unavailable_reason

    model = nn.Sequential(nn.Linear(8, 64), nn.GELU(), nn.Linear(64, 4)).eval()
    backends = ("torchscript", "torch-compile", "aoti", "ort-optimized")
    findings, seen = audit(model, x, rules=MATRIX, backends=backends, device="cuda")
    assert findings == [], [(f.rule, f.message) for f in findings]
    cuda = {b.backend: b for b in seen.backends if b.device == "cuda"}
    assert list(cuda) == ["eager", *backends]
    for name in ("torchscript", "torch-compile", "aoti"):
        assert cuda[name].status == "matches"
        assert {(r["comparison"], r["batch"]) for r in cuda[name].rows} == {
            (f"{name} (cuda) vs torch-cuda", 4), (f"{name} (cuda) vs torch-cuda", 3)}
        assert set(cuda[name].latency_ms) == {"4", "3"}
    ort_reason = unavailable_reason("cuda")
    if ort_reason is None:
        assert cuda["ort-optimized"].status == "matches"
        assert all(run.status == "ran" for run in (seen.outcome.coverage[r] for r in MATRIX))
    else:
        assert (cuda["ort-optimized"].status, cuda["ort-optimized"].skip_reason) == ("skipped", ort_reason)
        assert seen.outcome.coverage["EG406"].status == "skipped"


@pytest.mark.cuda
@pytest.mark.compiler
def test_float16_chain_on_cuda_differs_for_inductor_and_not_for_torchscript():
    """Inductor's Triton kernels, like its C++ ones, compute a fused float16 chain in float32."""
    _gpu_or_skip()
    x = torch.randn(4, 256, generator=torch.Generator().manual_seed(0)).half()
    findings, seen = audit(EulerBlock().half().eval(), x, rules=MATRIX, backends=("torch-compile", "torchscript"),
                           device="cuda")
    assert sorted((f.evidence["backend"], f.evidence["device"]) for f in findings) == [
        ("torch-compile", "cpu"), ("torch-compile", "cuda")]
    cuda = {b.backend: b for b in seen.backends if b.device == "cuda"}
    assert cuda["torchscript"].status == "matches" and cuda["torch-compile"].status == "differs"
