"""ONNX export parity (EG401-EG405): the check end to end on tiny models, and its parts.

Exports use the TorchScript exporter (fast); the few tests that need the dynamo exporter
(EG402 tries both, a dynamo-exported training-mode file) pay its one-off start-up cost.
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from evalguard.checks.onnx import check as onnx_parity
from evalguard.checks.onnx import compare as onnx_compare
from evalguard.checks.onnx import console as onnx_console
from evalguard.checks.onnx import cuda as onnx_cuda
from evalguard.checks.onnx import export as onnx_export
from evalguard.checks.onnx import static as onnx_static
from evalguard.facts import OnnxFacts, to_json
from evalguard.subject import AuditOptions, AuditSubject, ExampleInputs

ALL = frozenset({"EG401", "EG402", "EG403", "EG404", "EG405"})


def audit(model, *args, rules=ALL, kind="factory", **option_kwargs):
    kwargs = option_kwargs.pop("kwargs", {})
    subject = AuditSubject(path="m", kind=kind, model=model,
                           inputs_resolver=lambda: ExampleInputs(args=args, kwargs=kwargs))
    options = AuditOptions(selected=frozenset(rules), onnx_enabled=True, **option_kwargs)
    outcome = onnx_parity.run(subject, options)
    findings = list(outcome.findings)
    json.dumps([f.evidence for f in findings])   # evidence must be JSON-serialisable
    seen = Seen(outcome)
    json.dumps(to_json(seen.facts))
    return findings, seen


class Seen:
    """The ONNX check's facts (attributes of ``OnnxFacts``) and each rule's coverage."""

    def __init__(self, outcome):
        self.outcome = outcome
        [self.facts] = [f for f in outcome.facts if isinstance(f, OnnxFacts)]

    def __getattr__(self, name):
        return getattr(self.facts, name)

    def skipped(self, rule: str) -> str | None:
        run = self.outcome.coverage[rule]
        return run.reason if run.status == "skipped" else None


def rules_of(findings):
    return sorted({f.rule for f in findings})


def bn_cnn(seed=0):
    """Conv-BN-ReLU-Dropout with running statistics far from the defaults."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.3),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 12, 12) * 2 + 1)
    return model.eval()


@pytest.fixture(scope="module")
def image():
    return torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))


def export_file(model, x, path, **kwargs):
    """A user's export with the TorchScript exporter (as most existing ONNX files were made)."""
    kwargs.setdefault("dynamic_axes", {"x": {0: "b"}})
    with onnx_console.quiet():
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], **kwargs)
    return str(path)


# -- clean models -----------------------------------------------------------------------------
def test_clean_model_passes_and_records_the_parity_table(image):
    model = bn_cnn()
    model.train()   # the check audits an eval-mode copy, whatever mode the user's model is in
    findings, info = audit(model, image)
    assert findings == []
    assert model.training, "the user's model must not be touched"
    assert info.exporter == "torchscript"
    assert list(info.providers) == ["CPUExecutionProvider"]
    rows = info.parity
    assert [(r["output"], r["batch"]) for r in rows] == [("output", 2), ("output", 1)]
    first = rows[0]
    assert first["passed"] and first["max_abs_diff"] < 1e-5 and first["mismatched_fraction"] == 0
    assert {"max_rel_diff", "mean_abs_diff", "median_abs_diff", "min_passing_atol", "min_passing_rtol"} <= set(first)
    assert sum(b["count"] for b in first["histogram"]) == 2 * 4
    assert "histogram" not in rows[1]


def test_keyword_inputs_and_structured_outputs():
    class KwModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, input_ids, attention_mask=None, return_dict=True):
            h = self.emb(input_ids) * attention_mask.unsqueeze(-1)
            return {"hidden": h, "logits": self.head(h.mean(1)), "unused": None}

    ids = torch.randint(0, 10, (2, 5))
    mask = torch.ones(2, 5, dtype=torch.long)
    findings, info = audit(KwModel(), kwargs={"input_ids": ids, "attention_mask": mask, "return_dict": True})
    assert findings == []
    names = [(r["output"], r["onnx_output"]) for r in info.parity if r["batch"] == 2]
    assert names == [("output.hidden", "output.hidden"), ("output.logits", "output.logits")]


def test_batch_of_one_is_exported_with_a_dynamic_axis():
    findings, info = audit(nn.Sequential(nn.Linear(6, 3)), torch.randn(1, 6))
    assert findings == []
    assert [r["batch"] for r in info.parity] == [1, 2]


def test_scripted_model_is_exported_directly():
    scripted = torch.jit.script(nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Linear(6, 2)).eval())
    findings, info = audit(scripted, torch.randn(3, 6), kind="torchscript")
    assert findings == [] and info.exporter == "torchscript"


def test_keep_onnx_keeps_the_exported_file(tmp_path):
    findings, info = audit(nn.Sequential(nn.Linear(4, 2)), torch.randn(2, 4), keep_onnx=str(tmp_path / "out"))
    assert findings == []
    kept = tmp_path / "out" / "m.onnx"
    assert info.file == str(kept) and kept.is_file()


def test_disabled_or_unselected_does_nothing():
    subject = AuditSubject(path="m", kind="factory", model=nn.Linear(2, 2),
                           inputs_resolver=lambda: pytest.fail("inputs must not be resolved"))
    outcome = onnx_parity.run(subject, AuditOptions(selected=frozenset({"EG101"})))
    assert outcome.findings == () and outcome.facts == () and outcome.coverage == {}
    # --no-onnx: the engine does not call the check and reports its rules as skipped
    from evalguard.engine import audit_subject

    result, findings = audit_subject(subject, AuditOptions(selected=ALL, onnx_enabled=False))
    assert findings == []
    assert {rule: c.status for rule, c in result.coverage.items()} == {rule: "skipped" for rule in ALL}
    assert result.coverage["EG401"].reason == "ONNX checks turned off (--no-onnx)"


def test_static_rules_alone_skip_onnx_runtime():
    findings, info = audit(nn.Sequential(nn.Linear(4, 2)), torch.randn(2, 4), rules={"EG403"})
    assert findings == []
    assert info.exporter == "torchscript"
    assert info.providers == () and info.parity == ()
    assert "EG401" not in info.outcome.coverage   # not selected


# -- EG401 ------------------------------------------------------------------------------------
def test_stale_file_gives_eg401_naming_other_weights(tmp_path, image):
    stale = export_file(bn_cnn(seed=1), image, tmp_path / "stale.onnx")
    findings, info = audit(bn_cnn(seed=0), image, onnx_file=stale)
    assert rules_of(findings) == ["EG401"]
    finding = findings[0]
    assert "other weights" in finding.message
    outputs = finding.evidence["outputs"]
    assert outputs[0]["output"] == "output" and not outputs[0]["passed"]
    assert outputs[0]["max_abs_diff"] > 1e-2 and outputs[0]["mismatched_fraction"] > 0.5
    assert finding.evidence["failing"] == ["output"]
    assert info.exporter == "user file" and info.file == stale


def test_fresh_user_file_passes(tmp_path, image):
    model = bn_cnn()
    fresh = export_file(model, image, tmp_path / "fresh.onnx")
    findings, info = audit(model, image, onnx_file=fresh)
    assert findings == []
    assert info.parity[0]["passed"]


def test_training_mode_file_gives_eg403_and_explained_eg401(tmp_path, image):
    model = bn_cnn()
    path = export_file(model, image, tmp_path / "train.onnx", training=torch.onnx.TrainingMode.TRAINING,
                       do_constant_folding=False)
    findings, _ = audit(model, image, onnx_file=path)
    assert rules_of(findings) == ["EG401", "EG403"]
    eg403 = {f.evidence["op_type"]: f for f in findings if f.rule == "EG403"}
    assert set(eg403) == {"BatchNormalization", "Dropout"}
    assert eg403["BatchNormalization"].location.module == "1"
    assert eg403["Dropout"].location.module == "3"
    eg401 = next(f for f in findings if f.rule == "EG401")
    assert "training mode" in eg401.evidence["explanation"]


def test_training_mode_torchscript_default_exports_eval_graph(tmp_path, image):
    """Honesty check for the rule text: the TorchScript exporter's default (TrainingMode.EVAL)
    exports a model left in train mode as if it were in eval mode."""
    model = bn_cnn()
    path = export_file(model.train(), image, tmp_path / "default.onnx")
    findings, _ = audit(model.eval(), image, onnx_file=path)
    assert findings == []


def test_export_only_code_path_gives_eg401_from_our_own_export():
    class ExportPath(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            h = self.lin(x)
            if torch.onnx.is_in_onnx_export():
                return h * torch.sigmoid(1.702 * h)   # "fast GELU" only in the exported graph
            return F.gelu(h)

    findings, info = audit(ExportPath(), torch.randn(4, 8))
    assert rules_of(findings) == ["EG401"]   # the batch+1 mismatch is the same bug: no EG404
    assert findings[0].evidence["exporter"] == "torchscript"
    assert "explanation" not in findings[0].evidence


def test_nondeterministic_model_gets_eg403_but_no_eg401():
    class HardDropout(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            return F.dropout(self.lin(x), 0.5, training=True)

    findings, info = audit(HardDropout(), torch.randn(4, 8))
    assert rules_of(findings) == ["EG403"]
    assert "Dropout" in findings[0].message
    assert "two identical passes" in info.skipped("EG401")


def test_tolerances_override_globally_and_per_output(tmp_path, image):
    stale = export_file(bn_cnn(seed=1), image, tmp_path / "stale.onnx")
    loose = {"atol": 100.0}
    findings, info = audit(bn_cnn(), image, onnx_file=stale, tolerances=loose)
    assert findings == [] and info.parity[0]["atol"] == 100.0
    per_output = {"outputs": {"output": {"atol": 100.0}}}
    findings, _ = audit(bn_cnn(), image, onnx_file=stale, tolerances=per_output)
    assert findings == []


def test_unloadable_user_file_gives_eg401(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    findings, _ = audit(nn.Linear(4, 2), torch.randn(2, 4), onnx_file=str(bad))
    assert rules_of(findings) == ["EG401"] and "cannot load" in findings[0].message


# -- EG402 ------------------------------------------------------------------------------------
def test_unexportable_model_gives_eg402_with_both_exporters():
    class Cumprod(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            return torch.cumprod(torch.sigmoid(self.lin(x)), dim=-1)

    findings, info = audit(Cumprod(), torch.randn(2, 8))
    assert rules_of(findings) == ["EG402"]
    message = findings[0].message
    assert "torchscript" in message and "dynamo" in message and "aten::cumprod" in message
    assert len(message) < 700 and "\n" not in message
    assert findings[0].evidence["exporters_tried"] == ["torchscript", "dynamo"]
    assert info.parity == ()


def test_dynamo_training_mode_export_keeps_training_dropout(tmp_path):
    """What the dynamo exporter does with a model left in train mode (torch 2.13): Dropout
    stays in training mode (EG403)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Dropout(0.4), nn.Linear(6, 2))
    x = torch.randn(2, 6)
    path = str(tmp_path / "dyn.onnx")
    with onnx_console.quiet():
        torch.onnx.export(model.train(), (x,), path, dynamo=True, verbose=False)
    findings, _ = audit(model.eval(), x, onnx_file=path, rules={"EG403"})
    assert rules_of(findings) == ["EG403"] and findings[0].evidence["op_type"] == "Dropout"
    assert findings[0].location.module == "2"


# -- EG403 ------------------------------------------------------------------------------------
def test_hard_coded_batch_norm_training_gives_eg403_only():
    class HardBN(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)
            self.register_buffer("mean", torch.zeros(8))
            self.register_buffer("var", torch.ones(8))

        def forward(self, x):
            return F.batch_norm(self.lin(x), self.mean, self.var, training=True)

    findings, _ = audit(HardBN(), torch.randn(4, 8))
    assert rules_of(findings) == ["EG403"]
    assert findings[0].evidence["op_type"] == "BatchNormalization"
    assert "eval mode" in findings[0].message


def test_bare_onnx_target_gets_static_checks_only(tmp_path, image):
    path = export_file(bn_cnn(), image, tmp_path / "train.onnx", training=torch.onnx.TrainingMode.TRAINING,
                       do_constant_folding=False)
    subject = AuditSubject(path=path, kind="onnx", onnx_path=path,
                           inputs_resolver=lambda: pytest.fail("static checks need no inputs"))
    findings = list(onnx_parity.run(subject, AuditOptions(selected=ALL)).findings)
    assert rules_of(findings) == ["EG403"]
    assert all(f.location.path == path for f in findings)

    fixed = export_file(nn.Linear(4, 2), torch.randn(3, 4), tmp_path / "fixed.onnx", dynamic_axes=None)
    subject = AuditSubject(path=fixed, kind="onnx", onnx_path=fixed)
    outcome = onnx_parity.run(subject, AuditOptions(selected=ALL))
    assert outcome.findings == ()
    assert outcome.facts[0].fixed_first_dims == {"x": 3}
    assert outcome.coverage["EG403"].status == "ran"
    assert outcome.coverage["EG401"].status == "skipped"


def _graph(nodes, initializers=(), opset=20):
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4])],
                              initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_static_reading_of_dropout_constants():
    from onnx import helper, numpy_helper

    def constant(output, value):
        return helper.make_node("Constant", [], [output], value=numpy_helper.from_array(value))

    def dropout(ratio, mode, name):
        return [constant(f"r{name}", np.array(ratio, np.float32)), constant(f"t{name}", np.array(mode)),
                helper.make_node("Dropout", ["x", f"r{name}", f"t{name}"], [f"y{name}"],
                                 name=f"/enc/drop{name}/Dropout")]

    proto = _graph(dropout(0.1, True, "1") + dropout(0.1, False, "2") + dropout(0.0, True, "3")
                   + [helper.make_node("Dropout", ["x", "r1", "mode_in"], ["y4"], name="d4")])
    ops = onnx_static.training_mode_ops(proto)
    assert [(op.op_type, op.module) for op in ops] == [("Dropout", "enc.drop1")]

    init = numpy_helper.from_array(np.array(True), name="train_flag")
    proto = _graph([helper.make_node("Dropout", ["x", "", "train_flag"], ["y"], name="n")], [init])
    assert [op.node for op in onnx_static.training_mode_ops(proto)] == ["n"]


def test_module_paths_from_node_names_and_dynamo_metadata():
    from onnx import helper

    def named(name):
        return helper.make_node("Relu", ["x"], ["y"], name=name)

    assert onnx_static.node_module(named("/layers.0/inner/inner.1/Dropout")) == "layers.0.inner.1"
    assert onnx_static.node_module(named("/model/seq/seq.1/seq.1.0/Relu"), "model") == "seq.1.0"
    assert onnx_static.node_module(named("/model/model.1/BatchNormalization"), "model") == "1"
    assert onnx_static.node_module(named("/model/BatchNormalization"), "model") is None
    assert onnx_static.node_module(named("node_Relu_3")) is None
    dynamo = named("node_native_dropout")
    helper.set_metadata_props(dynamo, {"pkg.torch.onnx.name_scopes":
                                       "['', 'model', 'model.enc.0', 'model.enc.0.drop', 'native_dropout']"})
    assert onnx_static.node_module(dynamo, "model") == "enc.0.drop"


def test_static_reading_of_batch_norm_modes():
    from onnx import helper

    inputs = ["x", "s", "b", "m", "v"]
    proto = _graph([helper.make_node("BatchNormalization", inputs, ["y1"], name="train", training_mode=1),
                    helper.make_node("BatchNormalization", inputs, ["y2"], name="eval", training_mode=0),
                    helper.make_node("BatchNormalization", inputs, ["y3"], name="plain")])
    assert [op.node for op in onnx_static.training_mode_ops(proto)] == ["train"]
    old = _graph([helper.make_node("BatchNormalization", inputs, ["y"], name="old", is_test=0)], opset=6)
    assert [op.node for op in onnx_static.training_mode_ops(old)] == ["old"]


# -- EG404 ------------------------------------------------------------------------------------
def test_batch_size_baked_by_len_fails_at_another_batch():
    class LenReshape(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(12, 4)

        def forward(self, x):
            return self.lin(x.reshape(len(x), -1))

    findings, info = audit(LenReshape(), torch.randn(2, 3, 4))
    assert rules_of(findings) == ["EG404"]
    assert "batch size 1" in findings[0].message and findings[0].evidence["batch"] == 1
    assert info.parity[0]["passed"]


def test_batch_size_baked_as_constant_mismatches_at_another_batch():
    class BatchMean(nn.Module):
        def forward(self, x):
            return x.sum(dim=0) / len(x)

    findings, _ = audit(BatchMean(), torch.randn(2, 5))
    assert rules_of(findings) == ["EG404"]
    assert findings[0].evidence["failing"] == ["output"]


def test_fixed_batch_user_file_gives_eg404(tmp_path):
    model = nn.Linear(4, 2).eval()
    x = torch.randn(2, 4)
    path = export_file(model, x, tmp_path / "fixed.onnx", dynamic_axes=None)
    findings, _ = audit(model, x, onnx_file=path)
    assert rules_of(findings) == ["EG404"]
    assert findings[0].evidence["fixed_first_dims"] == {"x": 2}


# -- EG405 ------------------------------------------------------------------------------------
def test_cuda_requested_without_gpu_is_recorded_not_failed(image):
    reason = onnx_cuda.unavailable_reason("cuda")
    if reason is None:
        pytest.skip("a CUDA GPU and CUDAExecutionProvider exist here: covered by test_cuda_provider_parity")
    findings, info = audit(bn_cnn(), image, device="cuda")
    assert findings == []
    assert info.skipped("EG405") == reason


def test_cuda_verdict_logic_with_cpu_stand_ins():
    """The comparison logic of EG405 fed with CPU arrays standing in for the CUDA outputs."""
    expected = torch.randn(2, 3)
    good = expected.numpy()
    off = good + 0.5
    rows = onnx_cuda.compare_rows(["out"], ["out"], [good], [good], [expected], {}, 2)
    assert [r["comparison"] for r in rows] == [onnx_cuda.CPU_VS_CUDA, onnx_cuda.TORCH_CUDA]
    assert onnx_cuda.verdict(rows, cpu_parity_ok=True) is None
    rows = onnx_cuda.compare_rows(["out"], ["out"], [off], [good], [expected], {}, 2)
    assert "CPU provider on the same file" in onnx_cuda.verdict(rows, cpu_parity_ok=True)
    # CUDA agrees with ORT CPU but not with torch-cuda: EG405 only when CPU matched PyTorch.
    rows = onnx_cuda.compare_rows(["out"], ["out"], [good], [good], [expected + 0.5], {}, 2)
    assert "PyTorch on CUDA" in onnx_cuda.verdict(rows, cpu_parity_ok=True)
    assert onnx_cuda.verdict(rows, cpu_parity_ok=False) is None
    rows = onnx_cuda.compare_rows(["out"], ["out"], [off], [off], None, {}, 2)
    assert len(rows) == 1 and onnx_cuda.verdict(rows, cpu_parity_ok=True) is None


@pytest.mark.cuda
def test_cuda_provider_parity(image):
    reason = onnx_cuda.unavailable_reason("cuda")
    if reason:
        pytest.skip(f"no CUDA GPU / no CUDAExecutionProvider: {reason}")
    findings, info = audit(bn_cnn(), image, device="cuda")
    assert findings == []
    comparisons = {r["comparison"] for r in info.parity}
    assert {onnx_cuda.CPU_VS_CUDA, onnx_cuda.TORCH_CUDA} <= comparisons
    assert info.providers_cuda[0] == "CUDAExecutionProvider"


# -- parts ------------------------------------------------------------------------------------
def test_row_statistics_and_passing_tolerances():
    expected = torch.tensor([1.0, 2.0, 100.0, 0.0])
    actual = expected + torch.tensor([0.0, 2e-2, 0.05, 2e-4])
    r = onnx_compare.row("o", "o", actual.numpy(), expected, {}, comparison="c", batch=1)
    assert not r["passed"]
    # 2 -> 2.02 and 0 -> 2e-4 exceed both atol 1e-4 and rtol 1e-3; 100 -> 100.05 is within rtol.
    assert r["mismatched_fraction"] == pytest.approx(0.5)
    assert r["max_abs_diff"] == pytest.approx(0.05, rel=1e-3)
    # The reported smallest passing atol does pass, and anything below it fails.
    for atol, passes in ((r["min_passing_atol"], True), (r["min_passing_atol"] * 0.9, False)):
        again = onnx_compare.row("o", "o", actual.numpy(), expected, {"atol": atol}, comparison="c", batch=1)
        assert again["passed"] is passes
    counts = {b["label"]: b["count"] for b in r["histogram"]}
    assert counts["0"] == 1 and counts["1e-4..1e-3"] == 1 and counts["1e-2..1e-1"] == 2
    assert sum(counts.values()) == 4


def test_row_handles_shape_mismatch_and_non_finite_values():
    r = onnx_compare.row("o", "o", np.zeros((2, 3), np.float32), torch.zeros(2, 4), {}, comparison="c", batch=2)
    assert r["shape_mismatch"] and not r["passed"] and r["onnx_shape"] == [2, 3]
    r = onnx_compare.row("o", "o", np.array([np.nan, 1.0], np.float32), torch.tensor([0.0, 1.0]), {},
                         comparison="c", batch=2)
    assert r["max_abs_diff"] == math.inf and not r["passed"]     # a real float in the row
    from evalguard.reporters.json_report import jsonable

    assert json.loads(json.dumps(jsonable(r), allow_nan=False))["max_abs_diff"] == "inf"   # text only in JSON


def test_integer_outputs_must_match_exactly():
    r = onnx_compare.row("ids", "ids", np.array([1, 2]), torch.tensor([1, 3]), {}, comparison="c", batch=2)
    assert (r["atol"], r["rtol"], r["passed"]) == (0.0, 0.0, False)


def test_align_skips_outputs_the_file_dropped():
    pairs, torch_only, onnx_only = onnx_compare.align(
        ["a", "const", "b"], [(2, 3), (5,), (2, 4)], ["x", "y"], [(2, 3), (2, 4)])
    assert pairs == [(0, 0), (2, 1)] and torch_only == [1] and onnx_only == []
    pairs, _, _ = onnx_compare.align(["a", "b"], [(1,), (2,)], ["b", "a"], [(2,), (1,)])
    assert pairs == [(1, 0), (0, 1)]


def test_shorten_error_picks_the_cause_from_dynamo_summaries():
    dynamo_text = ("Failed to convert the exported program to an ONNX model. \x1b[96mThis is step 3/3\x1b[0m ...\n"
                   "- If there is a missing ONNX function, implement it.\n\n## Exception summary\n\n"
                   "<class 'torch.onnx._internal.exporter._errors.DispatchError'>: No ONNX function found for "
                   "<OpOverload(op='prims.prod')>. Failure message: No decompositions registered\n⬆️\n"
                   "<class 'torch.onnx._internal.exporter._errors.ConversionError'>: Error when translating")
    assert onnx_export.shorten_error(RuntimeError(dynamo_text)) == \
        "DispatchError: No ONNX function found for <OpOverload(op='prims.prod')>"
    long = ValueError("first line\n" + "x" * 1000)
    assert onnx_export.shorten_error(long) == "ValueError: first line"


def test_call_spec_rebuilds_calls_and_resizes_batches():
    x, mask = torch.arange(6.0).reshape(2, 3), torch.ones(2, 3)
    table = torch.zeros(5, 7)   # not batched: left alone
    spec = onnx_export.CallSpec.of(ExampleInputs(args=(x, 3), kwargs={"mask": mask, "table": table, "flag": True}))
    assert spec.names == ["arg0", "mask", "table"]
    args, kwargs = spec.rebuild(spec.tensors)
    assert args[1] == 3 and kwargs["flag"] is True and kwargs["table"] is table
    bigger = spec.resized(3)
    assert [tuple(t.shape) for t in bigger] == [(3, 3), (3, 3), (5, 7)]
    assert torch.equal(bigger[0][2], x[0])


def test_quiet_swallows_python_and_c_level_output(capfd):
    with onnx_console.quiet():
        print("python stdout")
        print("python stderr", file=sys.stderr)
        os.write(1, b"fd one\n")
        os.write(2, b"fd two\n")
    print("after")
    out, err = capfd.readouterr()
    assert out == "after\n" and err == ""


def test_progress_only_on_a_terminal(monkeypatch, capsys):
    with onnx_console.progress("exporting"):
        pass
    assert capsys.readouterr().err == ""

    class FakeTTY:
        text = ""

        def isatty(self):
            return True

        def write(self, s):
            FakeTTY.text += s

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stderr", FakeTTY())
    with onnx_console.progress("exporting"):
        pass
    assert FakeTTY.text.startswith("evalguard: exporting ...") and "done" in FakeTTY.text


# -- real architectures -----------------------------------------------------------------------
def _no_eg4_and_rows(model, rules=ALL, **kwargs):
    findings, info = audit(model.eval(), **kwargs)
    assert findings == [], [(f.rule, f.message) for f in findings]
    rows = info.parity
    assert rows and all(r["passed"] for r in rows)
    assert all("max_abs_diff" in r and "min_passing_atol" in r for r in rows)
    return info


@pytest.mark.realmodel
def test_real_tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, vocab_size=100))
    ids = torch.randint(0, 100, (2, 8))
    info = _no_eg4_and_rows(model, kwargs={"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert {r["output"] for r in info.parity} == {"output.last_hidden_state", "output.pooler_output"}


@pytest.mark.realmodel
def test_real_tiny_vit_and_resnet():
    from transformers import ResNetConfig, ResNetModel, ViTConfig, ViTModel

    torch.manual_seed(0)
    vit = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             image_size=32, patch_size=8))
    _no_eg4_and_rows(vit, kwargs={"pixel_values": torch.randn(2, 3, 32, 32)})
    resnet = ResNetModel(ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                      layer_type="bottleneck"))
    _no_eg4_and_rows(resnet, kwargs={"pixel_values": torch.randn(2, 3, 32, 32)})


@pytest.mark.realmodel
def test_real_tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=32,
                                       bos_token_id=0, eos_token_id=0))
    info = _no_eg4_and_rows(model, kwargs={"input_ids": torch.randint(0, 100, (2, 8))})
    assert info.exporter == "torchscript"


def test_feeds_by_name_by_position_and_with_missing_inputs(tmp_path):
    from evalguard.checks.onnx import runtime as onnx_runtime

    class Two(nn.Module):
        def forward(self, a, b):
            return a + b.float()

    path = str(tmp_path / "two.onnx")
    with onnx_console.quiet():
        torch.onnx.export(Two(), (torch.randn(2, 3), torch.ones(2, 3, dtype=torch.int32)), path, dynamo=False,
                          input_names=["a", "b"])
    sess = onnx_runtime.session(path)
    a, b = torch.randn(2, 3), torch.ones(2, 3, dtype=torch.int64)   # int64 is cast to the graph's int32
    by_name = onnx_runtime.feeds(sess, ["b", "a"], [b, a])
    assert by_name["a"] is not None and by_name["b"].dtype == np.int32
    by_position = onnx_runtime.feeds(sess, ["arg0", "arg1"], [a, b])
    assert np.array_equal(by_position["a"], a.numpy())
    with pytest.raises(onnx_runtime.FeedError, match="takes 2 inputs"):
        onnx_runtime.feeds(sess, ["arg0"], [a])


def test_lean_read_of_a_large_file_matches_a_full_load(tmp_path, monkeypatch):
    """Files over LEAN_BYTES are read without big initializer data; the static checks must see
    the same graph (here forced on a small training-mode file)."""
    import onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 4))
    path = export_file(model, torch.randn(2, 64), tmp_path / "train.onnx",
                       training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    full = onnx.load(path)
    monkeypatch.setattr(onnx_static, "LEAN_BYTES", -1)
    lean = onnx_static.load(path)
    assert [n.op_type for n in lean.graph.node] == [n.op_type for n in full.graph.node]
    by_name = {t.name: t for t in full.graph.initializer}
    assert [t.name for t in lean.graph.initializer] == list(by_name)
    for tensor in lean.graph.initializer:
        assert list(tensor.dims) == list(by_name[tensor.name].dims)
        original = by_name[tensor.name]
        kept_whole = int(np.prod(tensor.dims)) <= 4 or original.ByteSize() <= 1024
        assert (tensor == original) if kept_whole else not tensor.raw_data and not tensor.float_data
    assert any(t != by_name[t.name] for t in lean.graph.initializer)  # something was left out
    assert onnx_static.training_mode_ops(lean) == onnx_static.training_mode_ops(full)
    assert onnx_static.training_mode_ops(lean)  # the check has something to find here


def test_abs_error_nan_rules_dtypes_and_inputs_left_alone():
    """One error computation per parity row: NaN against NaN is no error, NaN against a number is
    an infinite one; float64 data keeps float64, anything narrower is compared in float32; the
    caller's tensors are not changed."""
    from evalguard.tensors import abs_error

    expected = torch.tensor([1.0, float("nan"), 2.0, -3.0])
    actual = torch.tensor([1.5, float("nan"), float("nan"), -3.0])
    before = expected.clone()
    err, magnitude = abs_error(actual, expected)
    assert err.dtype == torch.float32
    assert err.tolist() == [0.5, 0.0, float("inf"), 0.0]
    assert magnitude.tolist()[0] == 1.0 and magnitude.tolist()[3] == 3.0
    assert torch.allclose(expected, before, equal_nan=True)   # -3.0 still negative: no abs_ in place
    wide, _ = abs_error(actual.double() + 1e-12, expected.double())
    assert wide.dtype == torch.float64 and 0.0 < float(wide[3]) < 1e-11
    half, _ = abs_error(actual.half(), expected.half())
    assert half.dtype == torch.float32


def test_parity_row_statistics_do_not_depend_on_the_slice_size(monkeypatch):
    """The row's statistics are reduced slice by slice (bounded temporaries): slices of 7 and one
    slice for everything must give the same row, NaN, Inf and exact zeros included."""
    from evalguard import tensors
    from evalguard.checks.onnx import compare as onnx_compare

    generator = torch.Generator().manual_seed(3)
    expected = torch.randn(5, 11, generator=generator)
    actual = expected + torch.randn(5, 11, generator=generator) * 10.0 ** torch.randint(-9, 1, (5, 11), generator=generator)
    expected[0, 0] = 0.0
    actual[1, 2] = float("nan")
    actual[2, 3], expected[2, 3] = float("nan"), float("nan")
    actual[3, 4] = float("inf")
    actual[4, :3] = expected[4, :3]
    actual[4, 5], expected[4, 5] = float("inf"), float("inf")   # a NaN ratio in a late slice
    whole = onnx_compare.row("o", "o", actual, expected, {}, comparison="x", batch=5)
    monkeypatch.setattr(tensors, "CHUNK", 7)
    sliced = onnx_compare.row("o", "o", actual, expected, {}, comparison="x", batch=5)
    from evalguard.reporters.json_report import jsonable

    assert jsonable(sliced) == jsonable(whole)                 # NaN != NaN: compared in their JSON form
    assert not whole["passed"] and whole["max_abs_diff"] == math.inf
    assert sum(h["count"] for h in whole["histogram"]) == 55
