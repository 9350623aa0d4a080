"""EG401 localisation: the first module whose ONNX output diverges from PyTorch.

Each model here has exactly one layer that the ONNX file computes differently from PyTorch:
a custom autograd Function whose ONNX symbolic emits other ops than its forward computes
(TorchScript exporter), a torch.library custom op with a wrong ONNX translation (dynamo
exporter, user file), an export-only code path (both exporters, our own exports), or stale
weights (a user file). The check must name that layer, not merely say the outputs differ.
"""
from __future__ import annotations

import json

import pytest
import torch
from test_onnx_parity import audit, bn_cnn, export_file
from torch import nn

from evalguard.checks.onnx import console as onnx_console
from evalguard.checks.onnx.export import CallSpec
from evalguard.checks.onnx.localise import localise
from evalguard.facts import OnnxFacts, from_json, to_json
from evalguard.subject import ExampleInputs


class _Doubles(torch.autograd.Function):
    """forward: x * 2; the ONNX graph: x + relu(x), which is 2x only where x > 0."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def symbolic(g, x):
        return g.op("Add", x, g.op("Relu", x))


class SymbolicMismatch(nn.Module):
    def forward(self, x):
        return _Doubles.apply(x)


@torch.library.custom_op("evalguard_test::doubles", mutates_args=())
def _doubles_op(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_doubles_op.register_fake
def _(x):
    return torch.empty_like(x)


class CustomOp(nn.Module):
    def forward(self, x):
        return torch.ops.evalguard_test.doubles(x)


def _wrong_translation(x):
    """The custom op's ONNX translation: x + relu(x) instead of 2x."""
    from onnxscript import opset18 as op

    return op.Add(x, op.Relu(x))


class ExportOnly(nn.Module):
    """Another computation only while an exporter traces the model (any exporter)."""

    def forward(self, x):
        if torch.onnx.is_in_onnx_export():
            return x + 1
        return x * 2


class Net(nn.Module):
    """Linear -> ReLU -> Sequential(Linear, <layer>, Tanh) -> Linear: the layer is ``blk.1``."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(8, 8)
        self.blk = nn.Sequential(nn.Linear(8, 8), layer, nn.Tanh())
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.blk(torch.relu(self.a(x))))


@pytest.fixture(scope="module")
def x():
    return torch.randn(4, 8, generator=torch.Generator().manual_seed(3))


def eg401(findings):
    [finding] = [f for f in findings if f.rule == "EG401"]
    json.dumps(finding.evidence)
    return finding


def test_symbolic_mismatch_is_localised_in_our_torchscript_export(x):
    findings, seen = audit(Net(SymbolicMismatch()), x, onnx_exporter="torchscript")
    finding = eg401(findings)
    evidence = finding.evidence
    assert evidence["exporter"] == "torchscript"
    assert evidence["first_divergent_module"] == "blk.1"
    located = evidence["localisation"]
    assert located["module_type"] == "SymbolicMismatch"
    assert located["inputs_match"] is True
    assert located["input_max_abs_error"] < 1e-5 < located["output_max_abs_error"]
    assert sorted(n["op_type"] for n in located["onnx_nodes"]) == ["Add", "Relu"]
    assert all(n["name"].startswith("/model/blk/blk.1/") for n in located["onnx_nodes"])
    assert [(s["module"], s["status"]) for s in located["path"]] == [("blk", "diverges"), ("blk.1", "diverges")]
    assert "TorchScript" in located["mapped_by"]
    assert finding.location.module == "blk.1"
    assert "First divergent module: blk.1 (SymbolicMismatch; ONNX Relu, Add)" in finding.message
    # the typed fact carries the same localisation, and survives the JSON round trip
    fact = seen.localisation
    assert fact.first_divergent_module == "blk.1"
    assert from_json(OnnxFacts, json.loads(json.dumps(to_json(seen.facts)))).localisation == fact


def test_export_only_path_is_localised_in_our_dynamo_export(x):
    findings, _ = audit(Net(ExportOnly()), x, onnx_exporter="dynamo")
    evidence = eg401(findings).evidence
    assert evidence["exporter"] == "dynamo"
    assert evidence["first_divergent_module"] == "blk.1"
    located = evidence["localisation"]
    assert "name_scopes" in located["mapped_by"]
    assert [n["op_type"] for n in located["onnx_nodes"]] == ["Add"]


def test_wrong_custom_op_translation_in_a_dynamo_user_file(tmp_path, x):
    model = Net(CustomOp()).eval()
    path = str(tmp_path / "custom.onnx")
    with onnx_console.quiet():
        torch.onnx.export(model, (x,), path, dynamo=True, verbose=False, report=False,
                          custom_translation_table={torch.ops.evalguard_test.doubles.default: _wrong_translation},
                          dynamic_shapes=({0: torch.export.Dim.AUTO},))
    findings, _ = audit(model, x, onnx_file=path)
    evidence = eg401(findings).evidence
    assert evidence["exporter"] == "user file"
    assert evidence["first_divergent_module"] == "blk.1"
    assert sorted(n["op_type"] for n in evidence["localisation"]["onnx_nodes"]) == ["Add", "Relu"]


def test_symbolic_mismatch_in_a_torchscript_user_file(tmp_path, x):
    model = Net(SymbolicMismatch()).eval()
    path = export_file(model, x, tmp_path / "user.onnx")
    evidence = eg401(audit(model, x, onnx_file=path)[0]).evidence
    assert evidence["first_divergent_module"] == "blk.1"
    assert all(n["name"].startswith("/blk/blk.1/") for n in evidence["localisation"]["onnx_nodes"])


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_stale_weights_file_names_the_first_weight_layer(tmp_path, exporter):
    """Conv(0) -> BatchNorm(1) -> ...: both exporters fold the BatchNorm into the Conv node
    (TorchScript names the node after the Conv, dynamo after the BatchNorm); either way the
    first weight layer is named, with the folded one beside it."""
    image = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    path = str(tmp_path / "stale.onnx")
    if exporter == "torchscript":
        export_file(bn_cnn(seed=5), image, path)
    else:
        with onnx_console.quiet():
            torch.onnx.export(bn_cnn(seed=5), (image,), path, dynamo=True, verbose=False, report=False,
                              input_names=["x"], dynamic_shapes=({0: torch.export.Dim.AUTO},))
    findings, _ = audit(bn_cnn(seed=0), image, onnx_file=path, rules={"EG401"})
    finding = eg401(findings)
    assert "stale file" in finding.message   # the existing explanation is kept
    assert finding.evidence["first_divergent_module"] == "0"
    located = finding.evidence["localisation"]
    assert located["module_type"] == "Conv2d"
    assert located["folded"] == ["1"]
    assert located["input_max_abs_error"] == 0.0   # the graph input itself
    assert [n["op_type"] for n in located["onnx_nodes"]] == ["Conv"]


class TopLevelCode(nn.Module):
    """The export-only difference sits in the model's own forward, between two Linears."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 4)

    def forward(self, x):
        h = self.a(x)
        if torch.onnx.is_in_onnx_export():
            h = h + 1
        return self.b(h)


class Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Linear(8, 8)
        self.q = nn.Linear(8, 8)

    def forward(self, x):
        h = self.p(x)
        if torch.onnx.is_in_onnx_export():
            h = h * 3
        return self.q(h)


def test_divergence_in_top_level_code_has_no_module_and_says_why(x):
    evidence = eg401(audit(TopLevelCode(), x, onnx_exporter="torchscript")[0]).evidence
    assert evidence["first_divergent_module"] is None
    assert "top-level forward code" in evidence["first_divergent_module_reason"]
    located = evidence["localisation"]
    assert located["compared_output"] == "b"        # b diverged first, but its input already differed
    assert located["inputs_match"] is True          # ... and the model's inputs match by construction
    assert [n["op_type"] for n in located["onnx_nodes"]] == ["Add"]


def test_divergence_in_a_modules_own_code_names_that_module(x):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), Inner(), nn.Linear(8, 4))
    evidence = eg401(audit(model, x, onnx_exporter="torchscript")[0]).evidence
    assert evidence["first_divergent_module"] == "1"
    located = evidence["localisation"]
    assert located["compared_output"] == "1.q"
    assert "1's own forward code" in located["note"]
    assert [n["op_type"] for n in located["onnx_nodes"]] == ["Mul"]


def test_unmappable_file_says_why(tmp_path, x):
    """A file whose nodes carry no scope (renamed by some tool) cannot be mapped."""
    import onnx

    model = Net(SymbolicMismatch()).eval()
    path = export_file(model, x, tmp_path / "user.onnx")
    proto = onnx.load(path)
    for index, node in enumerate(proto.graph.node):
        node.name = f"n{index}"
    onnx.save(proto, path)
    findings, seen = audit(model, x, onnx_file=path)
    evidence = eg401(findings).evidence
    assert evidence["first_divergent_module"] is None
    assert "carry no module scopes" in evidence["first_divergent_module_reason"]
    assert "First divergent module: not found" in eg401(findings).message
    assert seen.localisation.first_divergent_module is None


def test_matching_file_runs_no_localisation(tmp_path, x):
    model = Net(nn.ReLU()).eval()
    findings, seen = audit(model, x, onnx_file=export_file(model, x, tmp_path / "ok.onnx"))
    assert findings == []
    assert seen.localisation is None


def test_localise_reports_all_match_when_only_outputs_differ(tmp_path, x):
    """Called on a file that matches at every module output: no module, and the reason says so."""
    model = Net(nn.ReLU()).eval()
    path = export_file(model, x, tmp_path / "ok.onnx")
    result = localise(model, CallSpec.of(ExampleInputs(args=(x,), kwargs={})), path, {})
    assert result["first_divergent_module"] is None
    assert result["modules_compared"] == 6   # a, blk, blk.0, blk.1, blk.2, head
    assert result["first_divergent_module_reason"].startswith("all 6 module outputs")


@pytest.mark.realmodel
@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_real_tiny_bert_names_the_mis_exported_activation(exporter):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, vocab_size=100))
    model.encoder.layer[1].intermediate.intermediate_act_fn = ExportOnly()
    ids = torch.randint(0, 100, (2, 8))
    findings, _ = audit(model.eval(), kwargs={"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                        onnx_exporter=exporter, rules={"EG401"})
    evidence = eg401(findings).evidence
    assert evidence["exporter"] == exporter
    assert evidence["first_divergent_module"] == "encoder.layer.1.intermediate.intermediate_act_fn"
    assert [s["module"] for s in evidence["localisation"]["path"]][:3] == [
        "encoder", "encoder.layer", "encoder.layer.1"]


def test_html_shows_the_path_to_the_divergent_module(x):
    """The EG401 finding and the parity section draw root -> blk -> blk.1, ending at blk.1."""
    from dataclasses import replace
    from html.parser import HTMLParser

    from evalguard.findings import Report, Severity, TargetResult
    from evalguard.reporters import render

    findings, seen = audit(Net(SymbolicMismatch()), x, onnx_exporter="torchscript", rules={"EG401"})
    target = TargetResult("m.py", "factory", "audited", "", {}, {"onnx": seen.facts})
    findings = [replace(f, severity=Severity.ERROR) for f in findings]   # the engine's job
    html = render(Report((target,), tuple(findings), {}), "html")

    class Nodes(HTMLParser):
        def __init__(self):
            super().__init__()
            self.nodes, self.text, self._in = [], [], None

        def handle_starttag(self, tag, attrs):
            classes = (dict(attrs).get("class") or "").split()
            if "node" in classes:
                self.nodes.append([classes[-1]])
            self._in = "n" if "n" in classes else None

        def handle_endtag(self, tag):
            self._in = None

        def handle_data(self, data):
            if self._in == "n" and self.nodes:
                self.nodes[-1].append(data)
            self.text.append(data)

    page = Nodes()
    page.feed(html)
    chain = [(role, name) for role, name in page.nodes]
    # once in the finding, once in the parity section
    assert chain == [("start", "(model)"), ("between", "blk"), ("end", "blk.1")] * 2
    text = " ".join(" ".join(page.text).split())
    assert "Where it starts" in text
    assert "First divergent module blk.1" in text and "ONNX nodes: Relu /model/blk/blk.1/Relu" in text
    assert '"mapped_by"' not in html   # the localisation is drawn, not dumped as JSON


def test_integer_graph_inputs_count_as_matching_inputs():
    """A module fed token ids straight from the graph inputs: its inputs match by construction,
    so it is named with inputs_match true although integer inputs are not compared."""

    class Lookup(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)

        def forward(self, ids):
            h = self.emb(ids)
            return h + 1 if torch.onnx.is_in_onnx_export() else h

    class Embedder(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.lookup = Lookup()
            self.head = nn.Linear(8, 2)

        def forward(self, ids):
            return self.head(self.lookup(ids))

    ids = torch.randint(0, 10, (3, 5), generator=torch.Generator().manual_seed(0))
    evidence = eg401(audit(Embedder(), ids, onnx_exporter="torchscript", rules={"EG401"})[0]).evidence
    assert evidence["first_divergent_module"] == "lookup"
    located = evidence["localisation"]
    assert located["inputs_match"] is True
    assert located["note"] == "its compared submodules (lookup.emb) match: the difference is in lookup's own forward code"
    assert {s["module"]: s["status"] for s in located["path"]} == {"lookup": "diverges"}


def test_shared_module_called_twice_is_not_mapped(x):
    """A module called twice has no single output to compare: with nothing else, no module is named."""

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = SymbolicMismatch()

        def forward(self, x):
            return torch.tanh(self.scale(self.scale(x)))

    evidence = eg401(audit(Twice(), x, onnx_exporter="torchscript", rules={"EG401"})[0]).evidence
    assert evidence["first_divergent_module"] is None
    assert "called exactly once" in evidence["first_divergent_module_reason"]


def test_lean_diff_follows_the_element_rule():
    from evalguard.checks.onnx.localise import lean_diff

    expected = torch.tensor([1.0, 100.0, float("inf"), float("nan"), 0.0])
    assert lean_diff(expected.clone(), expected, 1e-4, 1e-3) == (0.0, True)
    # 0.05 off at 100 is within rtol 1e-3 * 100 = 0.1; 0.05 off at 1.0 is not
    assert lean_diff(expected + torch.tensor([0.0, 0.05, 0, 0, 0]), expected, 1e-4, 1e-3) == (
        pytest.approx(0.05, rel=1e-3), True)
    assert lean_diff(expected + torch.tensor([0.05, 0, 0, 0, 0]), expected, 1e-4, 1e-3)[1] is False
    nan_for_zero = expected.clone()
    nan_for_zero[4] = float("nan")
    assert lean_diff(nan_for_zero, expected, 1e-4, 1e-3) == (float("inf"), False)


def test_file_exported_from_a_wrapper_is_mapped_without_its_attribute(tmp_path, x):
    """The user exported ``Serving(net=model)``: scopes read ``net.blk.1``; the model's path is ``blk.1``."""

    class Serving(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

    model = Net(SymbolicMismatch()).eval()
    path = export_file(Serving(model).eval(), x, tmp_path / "served.onnx")
    evidence = eg401(audit(model, x, onnx_file=path, rules={"EG401"})[0]).evidence
    assert evidence["first_divergent_module"] == "blk.1"


def test_file_from_another_model_says_the_scopes_do_not_match(tmp_path, x):
    other = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4)).eval()
    path = export_file(other, x, tmp_path / "other.onnx")
    evidence = eg401(audit(Net(nn.ReLU()), x, onnx_file=path, rules={"EG401"})[0]).evidence
    assert evidence["first_divergent_module"] is None
    assert "match none of the model's module paths" in evidence["first_divergent_module_reason"]
