"""Sample reports for the renderer tests, built directly (no checks run), plus their sanity tests.

The other ``test_reporters*`` files import the builders from here. ``golden_catalogue()`` is a
frozen rule catalogue so golden files do not change whenever someone edits a rule's text.
"""
from __future__ import annotations

from dataclasses import replace

from evalguard.catalogue import Rule, load_catalogue
from evalguard.engine import coverage
from evalguard.facts import ArchitectureFacts, InputFacts, LoadFacts, ModeFacts, ModeRowFact, OnnxFacts
from evalguard.findings import Finding, Location, Report, Severity, TargetResult
from evalguard.outcome import RuleRun

VERSIONS = {"evalguard": "0.1.0", "torch": "2.13.0", "onnx": "1.19.1", "onnxruntime": "1.23.2",
            "python": "3.11.7"}
SELECTED = ("EG101", "EG102", "EG103", "EG104", "EG105", "EG106", "EG107", "EG201", "EG202",
            "EG203", "EG204", "EG205", "EG206", "EG207", "EG301", "EG302", "EG401", "EG402",
            "EG403", "EG404", "EG405", "EG900", "EG901", "EG902", "EG903")
MODEL = "models/cifar_cnn.pt"
SOURCE = "src/train.py"

_RULE_TEXT = {
    "EG101": ("model-in-training-mode", "error", "Modules that behave differently in eval are in training mode",
              "Modules whose behaviour differs between train and eval are in training mode as served.",
              "Dropout keeps zeroing activations and BatchNorm normalises with the statistics of the "
              "current batch, so predictions are noisy and depend on batch composition.",
              "Call `model.eval()` after loading and before inference; save the model after `eval()` "
              "if it is shipped as a full-module pickle."),
    "EG102": ("nondeterministic-inference", "error", "Two forward passes on the same input disagree",
              "Two forward passes on the same input disagree in the served mode.",
              "A served model must be a function of its input. Random outputs break caching, A/B "
              "comparisons and every regression test downstream.",
              "Put the model in eval mode; if the randomness is deliberate (MC dropout), list the "
              "module with `--allow-stochastic`."),
    "EG105": ("functional-dropout-ignores-mode", "error", "Functional dropout ignores the module's mode",
              "`F.dropout` is called without `training=self.training`.",
              "`F.dropout` defaults to `training=True`: it keeps dropping activations after "
              "`model.eval()`, which only flips `self.training`.",
              "Pass `training=self.training`, or use an `nn.Dropout` module."),
    "EG201": ("dropout-before-batchnorm", "warning", "Dropout feeds BatchNorm: variance shift at inference",
              "A Dropout's output flows into a BatchNorm.",
              "BatchNorm's running variance is learned on dropped-out activations; at inference "
              "dropout is off, the variance shifts and accuracy drops (Li et al., CVPR 2019).",
              "Move Dropout after the last BatchNorm, or lower its rate."),
    "EG205": ("batchnorm-stats-never-updated", "error", "BatchNorm running statistics were never updated",
              "BatchNorm running stats are still at their initial values.",
              "In eval mode BatchNorm normalises with mean 0 and variance 1, which is wrong for "
              "almost every real activation distribution.",
              "Train (or recalibrate) with the module in training mode before exporting."),
    "EG301": ("adam-coupled-weight-decay", "warning", "Adam with weight decay couples decay to the gradient",
              "Adam with `weight_decay > 0` where AdamW was meant.",
              "Adam adds `wd * param` to the gradient before the adaptive scaling, so parameters "
              "with large gradients are barely regularised (Loshchilov & Hutter, ICLR 2019).",
              "Use `torch.optim.AdamW` with the same `weight_decay`."),
    "EG401": ("onnx-output-mismatch", "error", "ONNX Runtime outputs differ from eval-mode PyTorch",
              "ONNX Runtime outputs differ from eval-mode PyTorch beyond tolerance.",
              "The deployed graph computes something else than the model that was validated.",
              "Export from the eval-mode model and check the opset; compare per output with "
              "`--onnx FILE`."),
    "EG107": ("grad-enabled-inference", "info", "Inference builds an autograd graph",
              "Inference outputs require grad.",
              "Autograd keeps every intermediate activation alive: memory and latency cost.",
              "Wrap inference in `torch.inference_mode()`."),
}


def golden_catalogue() -> dict[str, Rule]:
    """Every selected id, with frozen text (full text for the rules the samples use)."""
    real = load_catalogue()
    rules = {}
    for rule_id in SELECTED:
        if rule_id in _RULE_TEXT:
            name, severity, title, summary, why, fix = _RULE_TEXT[rule_id]
        else:
            name, severity = real[rule_id].name if rule_id in real else rule_id.lower(), "warning"
            title = summary = why = fix = f"Frozen text for {rule_id}."
        rules[rule_id] = Rule(id=rule_id, name=name, title=title, severity=Severity.parse(severity),
                              status="implemented", summary=summary, why=why, fix=fix,
                              references=("Li et al., CVPR 2019",) if rule_id == "EG201" else ())
    rules["EG201"] = replace(rules["EG201"], examples={
        "bad": "nn.Sequential(nn.Dropout(0.3), nn.Conv2d(16, 16, 3), nn.BatchNorm2d(16))",
        "good": "nn.Sequential(nn.Conv2d(16, 16, 3), nn.BatchNorm2d(16), nn.Dropout(0.3))"})
    return rules


def _finding(rule, severity, message, at=MODEL, line=None, column=None, module=None, **evidence):
    name = _RULE_TEXT[rule][0] if rule in _RULE_TEXT else rule.lower()
    return Finding(rule, message, Location(at, line, column, module), evidence, severity, name)


def mode_table() -> list[dict]:
    """Rows in the shape evalguard.checks.eval_mode.mode_table writes (mode/reason/allowed)."""
    bn = "normalises with batch statistics in training, running statistics in eval"
    rows = [("", "CifarCNN", "train", False, ""), ("features", "Sequential", "train", False, ""),
            ("features.0", "Conv2d", "train", False, ""), ("features.1", "BatchNorm2d", "eval", True, bn),
            ("features.2", "ReLU", "train", False, ""),
            ("features.3", "Dropout", "train", True, "Dropout(p=0.3) is random in training"),
            ("features.4", "Conv2d", "train", False, ""), ("features.5", "BatchNorm2d", "train", True, bn),
            ("features.6", "ReLU", "train", False, ""), ("pool", "AdaptiveAvgPool2d", "train", False, ""),
            ("head", "Sequential", "train", False, ""),
            ("head.0", "Dropout", "train", True, "Dropout(p=0.5) is random in training"),
            ("head.1", "Linear", "train", False, "")]
    return [{"module": m, "type": t, "mode": mode, "behaviour_differs": d, "reason": r, "allowed": False}
            for m, t, mode, d, r in rows]


_DECADES = ["0", "<1e-8"] + [f"1e{k}..1e{k + 1}" for k in range(-8, 0)] + [">=1", "nan/inf"]


def parity_rows() -> list[dict]:
    logits_counts = [0, 1, 2, 1, 0, 1, 1, 3, 5, 6, 0, 0]
    return [
        # the shape evalguard.checks.onnx.compare.row() writes ({"label", "count"} buckets)
        {"output": "logits", "onnx_output": "logits", "shape": [2, 10], "dtype": "float32",
         "comparison": "onnxruntime CPU vs torch eval", "max_abs_diff": 0.4137, "max_rel_diff": 2.91,
         "mean_abs_diff": 0.0731, "median_abs_diff": 0.0412, "mismatched_fraction": 0.75,
         "atol": 1e-4, "rtol": 1e-3, "passed": False, "min_passing_atol": 0.4137, "min_passing_rtol": 2.91,
         "histogram": [{"label": lbl, "count": n} for lbl, n in zip(_DECADES, logits_counts)]},
        # the shape the issue brief describes ([label, count] pairs)
        {"output": "embedding", "max_abs_diff": 3.2e-07, "max_rel_diff": 1.1e-06,
         "mismatched_fraction": 0.0, "atol": 1e-4, "rtol": 1e-3, "passed": True,
         "histogram": [["<1e-6", 128], ["1e-6..1e-5", 0], ["1e-5..1e-4", 0], ["1e-4..1e-3", 0],
                       ["1e-3..1e-2", 0], ["1e-2..1e-1", 0], [">=1e-1", 0]]},
    ]


def model_facts(rows: list[dict] | None = None, parity: list[dict] | None = None,
                saved_training: bool = True) -> dict:
    """Typed facts for the CIFAR model target, as the loader and the checks produce them."""
    rows = mode_table() if rows is None else rows
    return {
        "load": LoadFacts(format="PyTorch full-module pickle (torch.save(model))",
                          model_class="cifar.models.CifarCNN", saved_training=saved_training,
                          mode_source="file", file_size=2_482_113),
        "inputs": InputFacts(("arg0: float32[2, 3, 32, 32]",), "from --input-shape 2x3x32x32"),
        "eval_mode": ModeFacts(rows=tuple(ModeRowFact(**r) for r in rows), omitted=0, modules=13,
                               in_training=sum(r["mode"] == "train" for r in rows),
                               behaviour_differs=sum(r["behaviour_differs"] for r in rows),
                               behaviour_differs_in_training=sum(r["behaviour_differs"] and r["mode"] == "train"
                                                                 for r in rows),
                               root_training=saved_training, mode_fixed=False),
        "architecture": ArchitectureFacts(dataflow="fx"),
        "onnx": OnnxFacts(exporter="torch.onnx.export (dynamo, opset 18)", providers=("CPUExecutionProvider",),
                          parity=tuple(parity_rows() if parity is None else parity)),
    }


def target(path: str, kind: str, findings, facts=None, skipped: dict | None = None,
           selected=SELECTED) -> TargetResult:
    """An audited target whose applicable rules all ran, except ``skipped`` (rule -> reason)."""
    skipped = skipped or {}
    runs = {rule: RuleRun("skipped", skipped[rule]) if rule in skipped else RuleRun("ran") for rule in selected}
    mine = [f for f in findings if f.location.path == path]
    return TargetResult(path, kind, "audited", "", coverage(kind, selected, mine, runs), facts or {})


def metadata(**overrides) -> dict:
    data = {"versions": dict(VERSIONS), "seed": 0, "device": "cpu", "fail_on": "error",
            "selected": list(SELECTED),
            "command": f"evalguard check {MODEL} {SOURCE} --input-shape 2x3x32x32 --format html --output report.html"}
    data.update(overrides)
    return data


def blocked_findings() -> list[Finding]:
    e, w, i = Severity.ERROR, Severity.WARNING, Severity.INFO
    found = [
        _finding("EG101", e, "3 modules that behave differently in eval are in training mode "
                 "(features.3, features.5, head.0); the model was saved without calling eval()",
                 module="features.3", modules=["features.3", "features.5", "head.0"], root_training=True),
        _finding("EG102", e, "two forward passes on the same input differ by up to 0.4137; first differing "
                 "module: features.3 (Dropout)", module="features.3", max_abs_diff=0.4137,
                 first_differing_module="features.3", passes=2, seed=0),
        _finding("EG201", w, "Dropout features.3 (p=0.3) feeds BatchNorm2d features.5 through features.4 "
                 "(Conv2d): its running variance was learned on dropped-out activations",
                 module="features.3", path=["features.3", "features.4", "features.5"], view="fx", p=0.3),
        _finding("EG401", e, "ONNX output 'logits' differs from eval-mode PyTorch: max abs diff 0.4137 "
                 "> atol 0.0001 on 75% of elements",
                 output="logits", max_abs_diff=0.4137, max_rel_diff=2.91, mean_abs_diff=0.0731,
                 median_abs_diff=0.0412, mismatched_fraction=0.75, atol=1e-4, rtol=1e-3,
                 atol_that_would_pass=0.42, worst_index=[1, 7], expected=-1.203, actual=-0.789,
                 onnx_file="/tmp/evalguard-x1/model.onnx",
                 note="The exported graph contains Dropout nodes with training_mode=1, so the ONNX "
                      "model keeps dropping activations at inference time; re-export after model.eval()."),
        _finding("EG107", i, "inference outputs require grad: the forward pass builds an autograd graph",
                 module=None, requires_grad_outputs=["logits", "embedding"]),
        _finding("EG105", e, "F.dropout(x, p=0.5) without training=self.training stays active after eval()",
                 at=SOURCE, line=42, column=16, call="F.dropout", function="Head.forward"),
        _finding("EG301", w, "torch.optim.Adam(..., weight_decay=0.01) couples weight decay with the "
                 "adaptive step; use AdamW", at=SOURCE, line=88, column=17, optimizer="Adam",
                 weight_decay=0.01),
    ]
    return sorted(found, key=Finding.sort_key)


def blocked_report() -> Report:
    findings = blocked_findings()
    targets = (target(MODEL, "full-module-pickle", findings, model_facts()),
               target(SOURCE, "python-source", findings, {"load": LoadFacts(format="Python source")}))
    return Report(targets, tuple(findings), metadata())


def safe_report() -> Report:
    """Clean model with one advisory (below --fail-on) finding."""
    rows = [dict(r, mode="eval") for r in mode_table()]
    rows[5]["mode"] = "train"        # deliberately stochastic: --allow-stochastic
    rows[5]["allowed"] = True
    parity = parity_rows()
    for entry in parity:
        entry.update(passed=True, max_abs_diff=2.0e-07, max_rel_diff=8.1e-07, mismatched_fraction=0.0,
                     min_passing_atol=0.0)
    parity[0]["histogram"] = [{"label": lbl, "count": 20 if lbl == "1e-8..1e-7" else 0} for lbl in _DECADES]
    finding = _finding("EG201", Severity.WARNING, "Dropout features.3 (p=0.3) feeds BatchNorm2d features.5",
                       module="features.3", path=["features.3", "features.4", "features.5"], view="hooks")
    facts = model_facts(rows, parity, saved_training=False)
    return Report((target(MODEL, "full-module-pickle", [finding], facts),), (finding,), metadata())


def not_run_report() -> Report:
    """No findings, but some rules could not run (an LSTM with --no-onnx): never "safe"."""
    skipped = {"EG104": "the batch dimension is unknown: rnn takes sequence-first inputs",
               **{rule: "ONNX checks turned off (--no-onnx)" for rule in ("EG401", "EG402", "EG403", "EG404")}}
    facts = {"load": LoadFacts(format="factory", model_class="lab.models.Tagger", saved_training=False)}
    return Report((target("lab/models.py:build", "factory", [], facts, skipped),), (), metadata())


def minimal_report() -> Report:
    """What a bare engine may produce: no info, no metadata, one finding without evidence."""
    finding = Finding("EG205", "BatchNorm2d bn1 running stats were never updated", Location("m.pt", module="bn1"),
                      {}, Severity.ERROR, "batchnorm-stats-never-updated")
    return Report((TargetResult("m.pt", "state-dict", "audited"),), (finding,), {})


def error_target_report() -> Report:
    targets = (target(MODEL, "full-module-pickle", [], {"load": LoadFacts(format="PyTorch pickle")}),
               TargetResult("models/broken.pt", "unknown", "error",
                            detail="not a zip archive or pickle (file is empty)"))
    return Report(targets, (), metadata())


def refused_report() -> Report:
    finding = Finding("EG901", "pickle references os.system, which is not an allowed global; the file was not loaded",
                      Location("downloads/model.pt"), {"global": "os.system", "opcode": "STACK_GLOBAL"},
                      Severity.ERROR, "unsafe-pickle-global")
    selected = ["EG101", "EG102", "EG201", "EG901", "EG902"]
    refused = TargetResult("downloads/model.pt", "full-module-pickle", "refused", "",
                           coverage("full-module-pickle", selected, [finding], {}, "refused"))
    return Report((refused,), (finding,), metadata(selected=selected))


def big_model_report(modules: int = 120) -> Report:
    """A transformer-sized mode table: the HTML must keep it readable."""
    rows = [ModeRowFact(name, kind, "eval", False)
            for name, kind in (("", "BertModel"), ("embeddings", "BertEmbeddings"),
                               ("encoder", "BertEncoder"), ("encoder.layer", "ModuleList"))]
    for layer in range(modules // 6):
        base = f"encoder.layer.{layer}"
        for suffix, kind, differs in (("", "BertLayer", False), (".attention", "BertAttention", False),
                                      (".attention.dropout", "Dropout", True), (".intermediate", "Linear", False),
                                      (".output", "BertOutput", False), (".output.dropout", "Dropout", True)):
            rows.append(ModeRowFact(base + suffix, kind, "train" if layer == 1 and differs else "eval", differs))
    mode = ModeFacts(rows=tuple(rows), omitted=0, modules=len(rows), in_training=2,
                     behaviour_differs=sum(r.behaviour_differs for r in rows), behaviour_differs_in_training=2,
                     root_training=False, mode_fixed=False)
    finding = _finding("EG101", Severity.ERROR, "2 Dropout modules in training mode in encoder.layer.1",
                       at="hf/bert", module="encoder.layer.1.attention.dropout")
    facts = {"load": LoadFacts(format="Hugging Face folder"), "eval_mode": mode}
    no_onnx = {rule: "ONNX checks turned off (--no-onnx)" for rule in ("EG401", "EG402", "EG403", "EG404")}
    return Report((target("hf/bert", "hf-folder", [finding], facts, no_onnx),), (finding,),
                  metadata(command="evalguard check hf/bert --input-shape 2x16 --input-dtype int64 --no-onnx"))


ALL_SAMPLES = {"blocked": blocked_report, "safe": safe_report, "minimal": minimal_report,
               "error_target": error_target_report, "refused": refused_report, "big_model": big_model_report,
               "not_run": not_run_report}


# ---------------------------------------------------------------- sanity of the samples themselves

def test_samples_are_sorted_like_the_engine_sorts():
    for build in ALL_SAMPLES.values():
        report = build()
        assert list(report.findings) == sorted(report.findings, key=Finding.sort_key)


def test_sample_rules_exist_in_the_real_catalogue():
    real = load_catalogue()
    for build in ALL_SAMPLES.values():
        assert {f.rule for f in build().findings} <= set(real)
    assert set(SELECTED) <= set(real)
