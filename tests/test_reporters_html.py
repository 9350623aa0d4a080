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
    refused_report,
    safe_report,
)

from evalguard.facts import InputFacts, LoadFacts, ModeFacts, ModeRowFact, OnnxFacts
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


def test_big_mode_tables_show_the_flagged_branch_and_fold_the_rest():
    html = _html(big_model_report())
    main, _, folded = html.partition("Show all")
    assert main.count('class="flagged"') == 2 and "encoder.layer.1.attention.dropout" in main
    assert "encoder.layer.7.output.dropout" not in main and "encoder.layer.7.output.dropout" in folded


def test_parity_table_has_a_histogram_per_output_with_out_of_tolerance_bars_in_red():
    html = _html(blocked_report())
    svgs = re.findall(r'<svg width="168".*?</svg>', html, flags=re.S)
    assert len(svgs) == 2
    assert svgs[0].count("<rect") == 12 and svgs[0].count("#f04438") == 4
    assert svgs[1].count("#f04438") == 0
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
        ["0", "0.4137", "3.20e-07", "1.00e-04", "1.234e+04", "7", "nan", ""]
    geo = histogram([["<1e-6", 1000], ["1e-6..1e-5", 1], ["1e-5..1e-4", 0]], 1e-6)
    heights = [b["h"] for b in geo["bars"]]
    assert heights[0] > heights[1] >= 2 and heights[2] == 0
    assert [b["over"] for b in geo["bars"]] == [False, True, False]     # empty buckets are never red
    assert histogram([], 1e-5) is None and histogram(None, None) is None
