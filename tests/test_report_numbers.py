"""Every report shows the same numbers for the same parity rows, NaN and infinity included:
checks keep real floats; only the JSON report writes non-finite ones as text ("nan", "inf")."""
import json
import math
import re

from evalguard.facts import OnnxFacts, worst_abs_error
from evalguard.findings import FAILED, Finding, Location, Report, RuleCoverage, Severity, TargetResult
from evalguard.reporters import render

ROWS = (
    {"output": "logits", "comparison": "onnxruntime-cpu vs torch", "batch": 2, "atol": 1e-4, "rtol": 1e-3,
     "passed": False, "max_abs_diff": 0.5, "max_rel_diff": 0.25},
    {"output": "scores", "comparison": "onnxruntime-cpu vs torch", "batch": 2, "atol": 1e-4, "rtol": 1e-3,
     "passed": False, "max_abs_diff": math.nan, "max_rel_diff": math.nan},
    {"output": "boxes", "comparison": "onnxruntime-cpu vs torch", "batch": 2, "atol": 1e-4, "rtol": 1e-3,
     "passed": False, "max_abs_diff": math.inf, "max_rel_diff": math.inf},
)


def report() -> Report:
    target = TargetResult("m.pt", "state-dict", "audited", "", {"EG401": RuleCoverage(FAILED)},
                          {"onnx": OnnxFacts(exporter="torchscript", parity=ROWS)})
    finding = Finding("EG401", "ONNX output differs", Location("m.pt"), {"outputs": list(ROWS)},
                      severity=Severity.ERROR, name="onnx-output-mismatch")
    return Report((target,), (finding,), {"selected": ["EG401"]})


def test_nan_is_the_worst_error():
    assert math.isnan(worst_abs_error(ROWS))
    assert worst_abs_error(ROWS[::-1]) != worst_abs_error(ROWS[::-1]) # order does not matter
    assert worst_abs_error([ROWS[0], ROWS[2]]) == math.inf
    assert math.isnan(worst_abs_error([{"max_abs_diff": "nan"}, {"max_abs_diff": 1.0}]))   # a re-read JSON report


def test_text_json_and_html_agree_on_nan_and_inf_rows():
    text = render(report(), "text")
    assert "worst abs error nan" in text
    data = json.loads(render(report(), "json"))       # strict JSON: no NaN/Infinity literals
    rows = data["targets"][0]["facts"]["onnx"]["parity"]
    assert [r["max_abs_diff"] for r in rows] == [0.5, "nan", "inf"]
    assert [r["max_abs_diff"] for r in data["findings"][0]["evidence"]["outputs"]] == [0.5, "nan", "inf"]
    html = render(report(), "html")
    line = re.search(r"worst \|error\| ([^ <(;]+)", html)
    assert line is not None and line.group(1) == "nan", "the HTML summary must show the same worst error"
    assert "worst |error| 0.5" not in html


def test_json_report_never_writes_a_nan_literal():
    text = render(report(), "json")
    json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(AssertionError(name)))
