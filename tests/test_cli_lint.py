"""The command line behaves like the linters ML engineers already use (ruff): output formats and
flags, rule names wherever ids go, suppression comments on multi-line calls, baseline notes,
and the text report's source snippets and summary."""
import json

import pytest

from evalguard.facts import InputFacts, LoadFacts, OnnxFacts, WeightsFacts
from evalguard.findings import (
    FAILED,
    PASSED,
    SKIPPED,
    Finding,
    Location,
    Report,
    RuleCoverage,
    Severity,
    TargetResult,
)
from evalguard.reporters import text

TWO_LOADS = ("import torch\n\n"
             "a = torch.load('a.pt', weights_only=False)\n"
             "b = torch.load('b.pt', weights_only=False)\n")


@pytest.fixture
def source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "serve.py"
    path.write_text(TWO_LOADS)
    return "serve.py"


def test_help_says_which_selection_flag_replaces_and_which_adds(run_cli):
    code, out, _ = run_cli("check", "--help")
    flat = " ".join(out.split())
    assert code == 0
    assert "--select RULES Rules to run, replacing the selection" in flat
    assert "--extend-select RULES Rules to add to the selection" in flat
    assert "--exit-zero" in flat and "--statistics" in flat and "--quiet" in flat and "github" in flat


def test_format_github_prints_workflow_commands_only(run_cli, source, tmp_path):
    code, out, _ = run_cli("check", source, "--select", "EG903", "--format", "github",
                           "--report", f"github:{tmp_path / 'gh.txt'}")
    lines = out.splitlines()
    assert code == 1 and len(lines) == 2
    assert lines[0].startswith("::error file=serve.py,line=3,col=5,title=EG903 unsafe-torch-load::torch.load(")
    assert lines[1].startswith("::error file=serve.py,line=4,")
    assert (tmp_path / "gh.txt").read_text() == out


def test_exit_zero_keeps_findings_but_not_target_errors(run_cli, source):
    code, out, _ = run_cli("check", source, "--select", "EG903", "--exit-zero")
    assert code == 0 and out.count("EG903 error") == 2
    code, _, err = run_cli("check", "missing.py", "--exit-zero")
    assert code == 2 and err.startswith("error: ")


def test_statistics_counts_per_rule(run_cli, source):
    code, out, _ = run_cli("check", source, "--statistics")
    lines = out.splitlines()
    assert code == 1
    assert lines[0].split("\t") == ["2", "EG903", "unsafe-torch-load"]
    assert lines[-1].startswith("1 target (1 audited): 2 errors")
    assert "torch.load(" not in out                      # counts instead of the findings


def test_statistics_with_a_structured_format_needs_an_output_file(run_cli, source, tmp_path):
    code, _, err = run_cli("check", source, "--statistics", "--format", "json")
    assert code == 2 and "--output" in err
    code, out, _ = run_cli("check", source, "--statistics", "--format", "json", "-o", tmp_path / "r.json")
    assert code == 1 and out.splitlines()[0].split("\t")[0] == "2"
    assert len(json.loads((tmp_path / "r.json").read_text())["findings"]) == 2


def test_quiet_prints_only_the_findings(run_cli, source):
    code, out, _ = run_cli("check", source, "--quiet")
    assert code == 1
    assert "target" not in out and "audited" not in out
    assert [line.split(" ")[1] for line in out.splitlines() if not line.startswith((" ", "3 ", "4 "))] == [
        "EG903", "EG903"]


def test_rule_names_are_accepted_by_select_and_ignore(run_cli, source):
    code, out, _ = run_cli("check", source, "--select", "unsafe-torch-load", "--format", "json")
    assert code == 1 and json.loads(out)["run"]["selected"] == ["EG903"]
    assert run_cli("check", source, "--ignore", "unsafe-torch-load")[0] == 0
    code, _, err = run_cli("check", source, "--select", "unsafe-torch-lod")
    assert code == 2 and "unsafe-torch-lod" in err


@pytest.mark.parametrize("marker_line", [0, 2, 3])
def test_suppression_on_any_line_of_a_multiline_call(run_cli, tmp_path, monkeypatch, marker_line):
    lines = ["import torch", "opt = torch.optim.Adam(", "    params,", "    weight_decay=1e-2,", ")",
             "other = torch.optim.Adam(params, weight_decay=1e-2)"]
    lines[marker_line + 1] += "  # evalguard: ignore[adam-coupled-weight-decay]"
    (tmp_path / "train.py").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    _, out, _ = run_cli("check", "train.py", "--select", "EG301", "--format", "json")
    found = [f["location"]["line"] for f in json.loads(out)["findings"]]
    assert found == [6]                      # the marked call is suppressed, the next statement is not


def test_suppression_does_not_leak_to_the_next_statement(run_cli, tmp_path, monkeypatch):
    (tmp_path / "train.py").write_text(
        "import torch\nx = 1  # evalguard: ignore[EG301]\nopt = torch.optim.Adam(p, weight_decay=1e-2)\n")
    monkeypatch.chdir(tmp_path)
    _, out, _ = run_cli("check", "train.py", "--select", "EG301", "--format", "json")
    assert [f["location"]["line"] for f in json.loads(out)["findings"]] == [3]


def test_baseline_says_what_it_did(run_cli, source, tmp_path):
    baseline = tmp_path / "baseline.json"
    code, _, err = run_cli("check", source, "--select", "EG903", "--baseline", baseline)
    assert code == 1 and "baseline written: 2 findings accepted" in err
    code, out, err = run_cli("check", source, "--select", "EG903", "--baseline", baseline)
    assert code == 0 and "2 findings hidden by the baseline" in err and "EG903" not in out
    (tmp_path / "serve.py").write_text("import torch\n\na = torch.load('a.pt', weights_only=False)\n")
    code, _, err = run_cli("check", source, "--select", "EG903", "--baseline", baseline)
    assert "1 finding hidden by the baseline" in err and "1 accepted finding no longer found" in err
    code, _, err = run_cli("check", source, "--select", "EG903", "--baseline", baseline, "--quiet")
    assert err == ""


def test_source_findings_show_the_line_with_a_caret(run_cli, source):
    _, out, _ = run_cli("check", source, "--select", "EG903")
    lines = out.splitlines()
    first = lines.index(next(line for line in lines if line.startswith("serve.py:3:5 EG903")))
    assert lines[first + 1:first + 4] == [
        "  |",
        "3 | a = torch.load('a.pt', weights_only=False)",
        "  |     ^^^^^^^^^^",
    ]


def _model_target(onnx_status, parity=(), weights=(8, 10), not_run=0):
    coverage = {"EG101": RuleCoverage(FAILED), "EG401": RuleCoverage(onnx_status, None)}
    coverage.update({f"EG20{i}": RuleCoverage(SKIPPED, "no dataflow") for i in range(not_run)})
    facts = {"load": LoadFacts(format="state_dict", weights=WeightsFacts(loaded=weights[0], expected=weights[1])),
             "inputs": InputFacts(("x: float32[2, 8]",), "--input-shape 2x8"),
             "onnx": OnnxFacts(parity=tuple(parity))}
    return TargetResult("ckpt.pt", "state-dict", "audited", coverage=coverage, facts=facts)


def test_summary_states_inputs_weights_onnx_and_rules_not_run():
    target = _model_target(PASSED, parity=[{"max_abs_diff": 2e-7}, {"max_abs_diff": 3.5e-6}], not_run=2)
    finding = Finding("EG101", "train mode", Location("ckpt.pt", module="drop"), severity=Severity.ERROR,
                      name="model-in-training-mode")
    out = text.render(Report((target,), (finding,))).splitlines()
    assert out[0].startswith("ckpt.pt::drop EG101 error model-in-training-mode")
    assert "ckpt.pt: inputs x: float32[2, 8] (--input-shape 2x8); weights 8/10 loaded; " \
           "ONNX ran (worst abs error 3.5e-06)" in out
    assert out[-1] == "1 target (1 audited): 1 error, 0 warnings, 0 infos - 2 rules did not run"
    assert any(line.startswith("ckpt.pt: not checked: EG200, EG201: no dataflow") for line in out)


def test_summary_says_when_onnx_did_not_run():
    out = text.render(Report((_model_target(SKIPPED),), ()))
    assert "weights 8/10 loaded; ONNX not run" in out
    assert "1 rule did not run" in out
