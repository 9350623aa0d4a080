"""The HTML report: self-contained, escaped, verdict first, pictures drawn from the facts."""
from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

import pytest
from test_reporters_samples import (
    ALL_SAMPLES,
    big_model_report,
    blocked_report,
    error_target_report,
    metadata,
    minimal_report,
    model_facts,
    refused_report,
    safe_report,
    target,
)

from evalguard.facts import BackendFact, InputFacts, LoadFacts, ModeFacts, ModeRowFact, OnnxFacts, WeightsFacts
from evalguard.findings import Finding, Location, Report, RuleCoverage, Severity, TargetResult
from evalguard.reporters import render
from evalguard.reporters.html import _environment, histogram, num, view_model


class _Page(HTMLParser):
    """Collects tags, attributes and text so tests can ask about the DOM, not about strings."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.text.append(data)

    def with_class(self, name: str) -> list[dict]:
        return [a for _, a in self.tags if name in (a.get("class") or "").split()]

    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def _html(report) -> str:
    return render(report, "html")


@pytest.mark.parametrize("sample", sorted(ALL_SAMPLES))
def test_page_is_self_contained(sample):
    html = _html(ALL_SAMPLES[sample]())
    page = _Page(html)
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "link", "iframe", "img", "object", "embed", "base", "form"}
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            if name in ("href", "src", "xlink:href", "action", "srcset", "poster"):
                assert value.startswith("#"), f"<{tag} {name}={value!r}> leaves the page"
    assert not re.search(r"https?://", html), "no URL of any kind belongs in the page"
    assert "@import" not in html and "url(" not in html
    csp = [a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0] and "script-src" not in csp[0]


def test_blocked_verdict_counts_and_run_facts_come_first():
    text = _Page(_html(blocked_report())).plain()
    assert text.index("Blocked: 4 errors") < text.index("Errors (4)")
    for fact in ("models/cifar_cnn.pt", "PyTorch full-module pickle", "arg0: float32[2, 3, 32, 32]",
                 "torch.onnx.export (dynamo, opset 18)", "CPUExecutionProvider", "2.13.0", "1.23.2",
                 "Seed 0", "Device cpu"):
        assert fact in text, fact
    assert "Warnings (2)" in text and "Info (1)" in text


def test_verdict_respects_fail_on():
    assert "Safe to deploy" in _html(safe_report())
    assert "1 warning to review" in _html(safe_report())
    strict = replace(safe_report(), metadata=metadata(fail_on="warning"))
    assert "Blocked: 1 warning" in _html(strict)
    lax = replace(blocked_report(), metadata=metadata(fail_on="error"))
    assert "Blocked: 4 errors<" in _html(lax)
    everything = replace(blocked_report(), metadata=metadata(fail_on="info"))
    assert "Blocked: 4 errors, 2 warnings, 1 info" in _html(everything)
    assert "Blocked: 1 target not audited" in _html(error_target_report())
    refused = refused_report()
    lowered = replace(refused, findings=tuple(replace(f, severity=Severity.WARNING) for f in refused.findings))
    assert "No blocking findings" in _html(lowered) and "Safe to deploy" not in _html(lowered)


def test_findings_are_grouped_by_severity_with_fix_and_why_from_the_catalogue():
    from evalguard.catalogue import load_catalogue

    html = _html(blocked_report())
    page = _Page(html)
    articles = page.with_class("finding")
    assert [a["class"].split()[1] for a in articles] == ["error"] * 4 + ["warning"] * 2 + ["info"]
    rule = load_catalogue()["EG201"]
    assert rule.fix.split()[0] in page.plain() and "Why it matters" in page.plain()
    assert "src/train.py:42:16" in page.plain()
    assert "module features.3" in page.plain()


def test_dropout_to_batchnorm_path_is_drawn_as_a_chain_with_types():
    page = _Page(_html(blocked_report()))
    nodes = page.with_class("node")
    assert [n["class"] for n in nodes] == ["node start", "node between", "node end"]
    text = page.plain()
    assert "features.3 Dropout" in text and "features.5 BatchNorm2d" in text
    assert "traced with torch.fx" in text


def test_mode_table_highlights_modules_left_in_training():
    html = _html(blocked_report())
    flagged = re.findall(r'<tr class="flagged">\s*<td class="tree" title="([^"]+)"', html)
    assert flagged == ["features.3", "features.5", "head.0"]
    assert "3 of 4 mode-sensitive modules left in training mode" in _Page(html).plain()


def _mode_groups(html: str) -> list[tuple[bool, str, str]]:
    """(open, parent name, body) for each folded parent group of the mode table."""
    found = re.findall(r'<details class="mode-group[^"]*"( open)?>\s*<summary><code class="parent">([^<]*)</code>'
                       r'(.*?)</details>', html, flags=re.S)
    return [(bool(opened), name, body) for opened, name, body in found]


def test_mode_table_is_folded_by_parent_with_flagged_parents_open():
    groups = _mode_groups(_html(blocked_report()))
    # features.* and head.* layers under their parents; pool sits directly under the model
    assert [(name, opened) for opened, name, _ in groups] == [("features", True), ("(model)", False),
                                                              ("head", True)]
    features = groups[0][2]
    assert "7 layers" in features and "3 mode-sensitive" in features and "2 left in training" in features
    assert re.findall(r'title="(features\.\d)"><code>(\d)</code>', features)[:2] == [("features.0", "0"),
                                                                                  ("features.1", "1")]
    assert "all in eval" not in features
    safe = _html(safe_report())
    assert 'class="parent">features</code>' in safe and "all in eval" in safe


def test_big_mode_tables_fold_to_one_line_per_layer_and_open_only_the_flagged_one():
    html = _html(big_model_report())
    groups = _mode_groups(html)
    names = [name for _, name, _ in groups]
    assert names == ["(model)"] + [f"encoder.layer.{i}" for i in range(20)]     # 124 rows -> 21 lines
    assert [name for opened, name, _ in groups if opened] == ["encoder.layer.1"]
    bodies = {name: body for _, name, body in groups}
    assert bodies["encoder.layer.1"].count('class="flagged"') == 2 and "2 left in training" in bodies["encoder.layer.1"]
    assert "attention.dropout</code>" in bodies["encoder.layer.1"]
    assert 'title="encoder.layer.7.output.dropout"' in bodies["encoder.layer.7"]


def test_model_summary_counts_modules_and_draws_layer_types():
    html = _html(blocked_report())
    summary = html[html.index('class="summary"'):html.index('class="modebar"')]
    text = _Page(summary).plain()
    # 13 modules, of which 3 containers (model, features, head): 10 layers
    assert "13 modules" in text and "10 layers" in text and "3 / 4 mode-sensitive left training" in text
    bars = re.findall(r'<rect x="136"[^>]*><title>([^<]+)</title>', summary)
    assert bars[:4] == ["BatchNorm2d: 2", "Conv2d: 2", "Dropout: 2", "ReLU: 2"]
    assert not any(b.startswith("Sequential") for b in bars) and len(bars) == 6


def test_parity_chart_places_each_output_on_a_log_axis_against_its_atol():
    from evalguard.reporters.html import parity_chart

    chart = parity_chart([{"output": "a", "max_abs_diff": 1e-5, "atol": 1e-4, "passed": True},
                          {"output": "b", "batch": 1, "max_abs_diff": 0.5, "atol": 1e-4, "passed": False},
                          {"output": "c", "max_abs_diff": 0.0, "atol": 1e-4, "passed": True},
                          {"output": "d", "max_abs_diff": "nan"}])
    a, b, c = chart["bars"]
    assert a["atol_x"] - chart["left"] > a["w"] and b["w"] > b["atol_x"] - chart["left"]   # inside vs outside
    assert b["failed"] and not a["failed"] and b["label"] == "b (batch 1)"
    assert c["w"] == 0 and c["value"] == "0 (identical)"
    assert [t["label"] for t in chart["ticks"]] == ["1e-10", "1e-8", "1e-6", "1e-4", "1e-2", "1"]
    html = _html(blocked_report())
    svg = re.search(r'<svg class="parity-chart".*?</svg>', html, flags=re.S).group(0)
    assert "per output (log scale)" in svg and svg.count("<rect") == 2 and svg.count("#f04438") == 1


def test_parity_table_has_a_histogram_per_output_with_out_of_tolerance_bars_in_red():
    html = _html(blocked_report())
    svgs = re.findall(r'<svg class="hist".*?</svg>', html, flags=re.S)
    assert len(svgs) == 2
    assert svgs[0].count("<rect") == 12 and svgs[0].count("#f04438") == 4
    assert svgs[1].count("#f04438") == 0
    # labelled axes: what x and y are, the first and last bucket, the tallest count
    labels = [re.sub(r"\s+", " ", t) for t in re.findall(r"<text[^>]*>([^<]+)</text>", svgs[0])]
    assert labels == ["6", "0", "elements", "0", "nan/inf", "|error| per decade"]
    assert "✗ fail" in _Page(html).plain() and "✓ pass" in _Page(html).plain()


def test_long_evidence_is_folded():
    page = _Page(_html(blocked_report()))
    assert "6 more evidence fields" in page.plain()          # EG401 has 14 fields, 8 shown
    finding = Finding("EG900", "check crashed", Location("m.pt"), {"traceback": "x" * 400},
                      Severity.ERROR, "internal-check-error")
    html = _html(Report((TargetResult("m.pt", "state-dict", "audited"),), (finding,), {}))
    assert re.search(r"<details><summary>x{60}…</summary><pre>x{400}</pre>", html)


def test_user_text_is_escaped():
    evil = "<script>alert(1)</script>"
    finding = Finding("EG101", f"module {evil} in training", Location(f"{evil}.pt", module=evil),
                      {evil: evil}, Severity.ERROR, "model-in-training-mode")
    mode = ModeFacts(rows=(ModeRowFact(evil, evil, "train", True, evil),), omitted=0, modules=1, in_training=1,
                     behaviour_differs=1, behaviour_differs_in_training=1, root_training=True, mode_fixed=False)
    target = TargetResult(f"{evil}.pt", "state-dict", "audited", "", {"EG101": RuleCoverage("skipped", evil)},
                          {"inputs": InputFacts((evil,), evil), "eval_mode": mode,
                           "load": LoadFacts(format=evil, details=((evil, evil),))})
    html = _html(Report((target,), (finding,), {"command": evil}))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_absent_facts_render_without_crashing():
    html = _html(minimal_report())
    text = _Page(html).plain()
    assert "Blocked: 1 error" in text and "No run details were recorded" in text
    assert "Train/eval state" not in text and "ONNX Runtime vs" not in text
    empty = _html(Report((), (), {}))
    assert "Nothing audited" in empty
    odd = TargetResult("m.pt", "state-dict", "audited", "", {},
                       {"onnx": OnnxFacts(parity=({"output": "y"},)),
                        "load": LoadFacts(format="state-dict", details=(("Extra", "k 1"),))})
    text = _Page(_html(Report((odd,), (), {}))).plain()
    assert "n/a" in text and "no histogram" in text and "Extra k 1" in text


def test_environment_is_strict_and_autoescaped():
    from jinja2 import StrictUndefined, UndefinedError

    env = _environment()
    assert env.autoescape is True and env.undefined is StrictUndefined
    with pytest.raises(UndefinedError):
        env.get_template("report.html.j2").render(page={"csp": ""})


def test_view_model_counts_and_baseline_note():
    report = replace(blocked_report(), metadata=metadata(baseline={"path": "b.json", "suppressed": 5, "fixed": 2}))
    view = view_model(report)
    assert [c["count"] for c in view["counts"]] == [4, 2, 1]
    assert [c["blocking"] for c in view["counts"]] == [True, False, False]
    assert "5 known findings hidden, 2 accepted findings no longer present" in _Page(_html(report)).plain()


def test_number_formatting_and_histogram_geometry():
    assert [num(v) for v in (0.0, 0.4137, 3.2e-07, 1e-4, 12345.0, 7, "nan", None)] == \
        ["0", "0.4137", "3.2e-07", "1e-04", "1.234e+04", "7", "nan", ""]
    geo = histogram([["<1e-6", 1000], ["1e-6..1e-5", 1], ["1e-5..1e-4", 0]], 1e-6)
    heights = [b["h"] for b in geo["bars"]]
    assert heights[0] > heights[1] >= 2 and heights[2] == 0
    assert [b["over"] for b in geo["bars"]] == [False, True, False]     # empty buckets are never red
    assert histogram([], 1e-5) is None and histogram(None, None) is None


# ---------------------------------------------------------------- issue 19: the page an ML lead reads

def _fifty_dropouts() -> Report:
    """One rule firing on 50 modules of one target, and the same rule once on another target."""
    findings = [Finding("EG204", f"nn.Dropout on the feature maps of block.{i}", Location("m.pt", module=f"block.{i}.drop"),
                        {"p": 0.1, "empty": "", "none": None}, Severity.WARNING, "elementwise-dropout-on-feature-maps")
                for i in range(50)]
    findings.append(Finding("EG204", "nn.Dropout on feature maps", Location("n.pt", module="drop"), {},
                            Severity.WARNING, "elementwise-dropout-on-feature-maps"))
    targets = (TargetResult("m.pt", "state-dict", "audited"), TargetResult("n.pt", "state-dict", "audited"))
    return Report(targets, tuple(sorted(findings, key=Finding.sort_key)), {})


def test_findings_with_one_root_cause_share_one_card():
    html = _html(_fifty_dropouts())
    page = _Page(html)
    cards = page.with_class("finding")
    assert len(cards) == 2                                   # m.pt's 50 findings, n.pt's one
    text = page.plain()
    assert "Warnings (51)" in text and "50 findings of EG204 in m.pt: 50 modules" in text
    first = html[html.index('class="finding warning"'):html.index("</article>")]
    assert first.count("<tr id=\"finding-") == 50 and "block.49.drop" in first
    assert first.count("Why it matters") == 1 and first.count("evalguard explain EG204") == 1
    assert "and 38 more" in first                            # the summary line names the first 12
    assert '<details class="members"><summary>Each of the 50 findings' in first     # folded
    few = Report(_fifty_dropouts().targets, _fifty_dropouts().findings[:3], {})
    assert '<details class="members" open><summary>Each of the 3 findings' in _html(few)


def test_evidence_is_a_readable_table_not_json_and_has_no_empty_rows():
    finding = Finding("EG101", "x", Location("m.pt"), {
        "types": {"BatchNorm2d": 2, "Dropout2d": 1},
        "modules": [{"module": "stem.1", "type": "BatchNorm2d"}, {"module": "drop", "type": "Dropout2d", "p": 0.3}],
        "tolerance": {"atol": 1e-6, "rtol": 1e-5}, "block": "", "nothing": [], "missing": None,
        "nested": [[1, 2], {"a": [3]}]}, Severity.ERROR, "model-in-training-mode")
    html = _html(Report((TargetResult("m.pt", "state-dict", "audited"),), (finding,), {}))
    table = html[html.index('<table class="evidence">'):html.index('<div class="advice">')]
    assert '{"' not in table and "&#34;" not in table and '": ' not in table
    keys = re.findall(r"<tr><td class=\"ek\">(\w+)</td><td>", table)
    assert keys == ["types", "modules", "tolerance", "nested"]          # block/nothing/missing were empty
    assert "<tr><td>BatchNorm2d</td><td>2</td></tr>" in table and "<tr><td>atol</td><td>1e-06</td></tr>" in table
    assert "<th>module</th><th>type</th><th>p</th>" in table
    assert "<td>drop</td><td>Dropout2d</td><td>0.3</td>" in table and "<td>stem.1</td><td>BatchNorm2d</td><td></td>" in table
    assert "[1, 2], a [3]" in table and "{" not in table   # a nested record reads as pairs, no raw dict (issue 30)


def test_message_backticks_become_code():
    finding = Finding("EG201", "Dropout2d `drop` feeds `block.1`", Location("m.pt"), {}, Severity.WARNING,
                      "dropout-before-batchnorm")
    html = _html(Report((TargetResult("m.pt", "state-dict", "audited"),), (finding,), {}))
    assert "Dropout2d <code>drop</code> feeds <code>block.1</code>" in html and "`" not in _Page(html).plain()


def _audited_card(html: str, index: int = 1) -> str:
    start = html.index(f'id="target-{index}"')
    return html[start:html.index("</section>", start)]


def test_first_screen_says_what_was_audited_and_what_did_not_run():
    facts = dict(model_facts())
    facts["load"] = LoadFacts(format="state-dict", model_class="cifar.models.CifarCNN", saved_training=False,
                              weights=WeightsFacts("--model cifar:build", 60, 62, ("fc.bias",), 2))
    facts["onnx"] = replace(facts["onnx"], providers=("CPUExecutionProvider",),
                            backends=(BackendFact("eager", "reference"), BackendFact("torchscript", "matches"),
                                      BackendFact("torch-compile", "differs")))
    t = target("m.pt", "state-dict", [], facts, skipped={"EG104": "the batch dimension is unknown"})
    html = _html(Report((t,), (), metadata()))
    card = _Page(_audited_card(html)).plain()
    for line in ("What was audited", "Model cifar.models.CifarCNN", "Saved in training mode no",
                 "Weights 60 of 62 tensors loaded (2 missing, 0 unexpected) into --model cifar:build",
                 "Inputs arg0: float32[2, 3, 32, 32]",
                 "ONNX ONNX Runtime (CPUExecutionProvider) differs in 1 of 2 comparisons; worst |error| 0.4137 (atol 1e-04)",
                 "Backends eager (reference), torchscript (matches), torch-compile (differs)",
                 "Not checked", "EG104 : the batch dimension is unknown"):
        assert line in card, line
    text = _Page(html).plain()
    assert text.index("What was audited") < text.index("Model summary and train/eval state")


def test_factory_target_says_returned_and_where_its_weights_came_from():
    facts = {"load": LoadFacts(format="factory", model_class="_evalguard_factory_123.Net", saved_training=True)}
    no_onnx = {rule: "ONNX checks turned off (--no-onnx)" for rule in ("EG401", "EG402", "EG403", "EG404")}
    t = target("lab/m.py:build", "factory", [], facts, skipped=no_onnx)
    card = _Page(_audited_card(_html(Report((t,), (), metadata())))).plain()
    assert "Returned in training mode yes" in card and "Saved in training mode" not in card
    assert "Model lab/m.py:Net" in card and "_evalguard_factory_" not in card
    assert "Weights as the factory built them (no weights file loaded)" in card
    assert "ONNX did not run (ONNX checks turned off (--no-onnx))" in card


def test_multi_target_reports_get_a_table_of_contents_with_each_verdict():
    html = _html(error_target_report())
    toc = html[html.index('class="card targets-toc"'):]
    toc = toc[:toc.index("</section>")]
    rows = re.findall(r'<a href="#(target-\d)"><code>([^<]+)</code></a>.*?<span class="tv (\w+)">([^<]+)</span>',
                      toc, flags=re.S)
    assert rows == [("target-1", "models/cifar_cnn.pt", "safe", "Safe to deploy"),
                    ("target-2", "models/broken.pt", "blocked", "Blocked: 1 target not audited")]
    assert 'id="target-1"' in html and 'id="target-2"' in html
    blocked = _html(blocked_report())
    assert re.search(r'href="#target-2"><code>src/train.py</code></a>.*?Blocked: 1 error', blocked, flags=re.S)
    assert 'class="card targets-toc"' not in _html(safe_report())   # one target: no table of contents


def test_model_summary_states_parameter_count_and_size():
    from dataclasses import replace

    report = blocked_report()
    target = report.targets[0]
    load = replace(target.facts["load"], parameters=1_234_567, parameter_bytes=4_938_268)
    report = replace(report, targets=(replace(target, facts={**target.facts, "load": load}), *report.targets[1:]))
    html = _html(report)
    text = _Page(html[html.index('class="summary"'):html.index('class="modebar"')]).plain()
    assert "1.23M parameters (4.7 MiB)" in text


def test_loader_records_parameter_count_and_bytes():
    import torch.nn as nn

    from evalguard.loading.subjects import model_size

    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    size = model_size(model)
    assert size["parameters"] == 4 * 3 + 3 + 3 + 3
    # buffers count towards memory: running mean/var (float32) and num_batches_tracked (int64)
    assert size["parameter_bytes"] == (21 + 3 + 3) * 4 + 8


# --- issue 30: the report as a newcomer reads it ---------------------------------------------

def newcomer_report(root) -> Report:
    """Three targets as a first run gives them: a model whose ONNX file is stale (EG401 with its
    outputs table and histogram) and an info finding, a source file with a finding on a real
    line, and a folder with nothing to audit; plus many rules skipped for one reason."""
    from test_reporters_samples import parity_rows

    source = root / "src" / "serve.py"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("import torch\nmodel = torch.load('m.pt', weights_only=False)\n")
    empty = root / "empty_dir"
    empty.mkdir(exist_ok=True)
    model = str(root / "classifier.pt")
    findings = [
        Finding("EG401", "ONNX Runtime outputs differ from the eval-mode PyTorch model", Location(model),
                {"onnx_file": "stale.onnx", "outputs": parity_rows()[:1], "failing": ["logits"]},
                Severity.ERROR, "onnx-output-mismatch"),
        Finding("EG203", "Dropout `head.0` feeds the final layer", Location(model, module="head.0"), {"p": 0.2},
                Severity.INFO, "dropout-before-output"),
        Finding("EG903", "torch.load(..., weights_only=False) unpickles arbitrary objects",
                Location(str(source), 2, 9), {"function": "torch.load"}, Severity.ERROR, "unsafe-torch-load"),
    ]
    findings.sort(key=Finding.sort_key)
    skipped = {rule: "the model has no BatchNorm" for rule in ("EG201", "EG202", "EG204", "EG205", "EG206")}
    targets = (target(model, "state-dict", findings, model_facts(), skipped=skipped),
               target(str(source), "python-source", findings, {}),
               TargetResult(str(empty), "unknown", "error", f"{empty}: is a directory with no model files"))
    return Report(targets, tuple(findings), metadata())


def _newcomer_page(tmp_path) -> tuple[str, _Page]:
    html = _html(newcomer_report(tmp_path))
    return html, _Page(html)


def test_eg401_outputs_are_the_parity_table_with_a_histogram_chart_not_raw_records(tmp_path):
    html, page = _newcomer_page(tmp_path)
    card = html[html.index('class="finding error"'):]
    card = card[:card.index("</article>")]
    assert '<table class="parity">' in card and '<svg class="hist"' in card
    assert "{label" not in html and "label:" not in html and "'count'" not in html
    assert '<table class="records">' not in card        # the wide one-letter-wrapped records table is gone


def test_navigation_names_each_target_and_a_folder_is_a_folder(tmp_path):
    html, page = _newcomer_page(tmp_path)
    nav = html[html.index('<nav class="toc">'):html.index("</nav>")]
    links = re.findall(r'<a href="#(modes|parity)-\d+">([^<]+)</a>', nav)
    assert links and all(text.endswith(": classifier.pt") for _, text in links), links
    toc = html[html.index('class="card targets-toc"'):]
    assert re.search(r"empty_dir</code></a></td><td>folder</td>", toc)
    assert ">unknown<" not in html


def test_not_checked_says_a_shared_reason_once(tmp_path):
    html, page = _newcomer_page(tmp_path)
    assert html.count("the model has no BatchNorm") == 1
    notes = html[html.index('class="section-gap not-run"'):]
    notes = notes[:notes.index("</div>")]
    assert all(f"<code>{rule}</code>" in notes for rule in ("EG201", "EG202", "EG204", "EG205", "EG206"))


def test_rules_checked_matches_the_targets_and_info_is_noted_not_failed(tmp_path):
    report = newcomer_report(tmp_path)
    view = view_model(report)
    checked = {rule for t in report.targets for rule, c in t.coverage.items() if c.status in ("passed", "failed")}
    run = dict(view["run"])
    assert run["Rules checked"] == f"{len(checked)} rules on at least one target"
    assert run["Rules selected"] == f"{len(report.metadata['selected'])} rules"
    model = view["targets"][0]["coverage"]
    assert model["noted"] == 1                    # EG203 raised only an info finding
    assert model["failed"] == 1                   # EG401
    page = _Page(_html(report)).plain()
    assert "1 failed, 1 noted (info only)" in page


def test_source_findings_show_their_code_line(tmp_path):
    html, page = _newcomer_page(tmp_path)
    card = html[html.index("EG903"):]
    assert '<pre class="source-line"><code>' in card
    assert "2 | model = torch.load(&#39;m.pt&#39;, weights_only=False)" in card
    assert "  |         ^^^^^^^^^^" in card


def test_api_report_does_not_name_the_command_line_flag():
    skipped = {rule: "ONNX checks turned off (--no-onnx)" for rule in ("EG401", "EG402")}
    api = target("Classifier", "live-module", [], {}, skipped=skipped)
    html = _html(Report((api,), (), metadata(command=None)))
    assert "--no-onnx" not in html and "audit(onnx=False)" in html
    cli = target("m.pt", "state-dict", [], {}, skipped=skipped)
    assert "(--no-onnx)" in _html(Report((cli,), (), metadata()))
