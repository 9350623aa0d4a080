"""Issue 13's acceptance: rules that did not run are never reported as passed, and
evalguard's own bugs are EG900 naming the step, never a finding against the user's file."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

LSTM = """\
import torch
from torch import nn


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 16)          # batch_first=False: the batch dimension is dim 1
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def build():
    torch.manual_seed(0)
    return Tagger().eval()
"""


@pytest.fixture
def lstm(tmp_path):
    path = tmp_path / "tagger.py"
    path.write_text(LSTM)
    return f"{path}:build"


def test_lstm_without_onnx_says_what_did_not_run(run_cli, lstm, tmp_path):
    html, junit = tmp_path / "r.html", tmp_path / "r.xml"
    code, out, err = run_cli("check", "--model", lstm, "--input-shape", "5x2x8", "--no-onnx",
                             "--format", "json", "--report", f"html:{html}", "--report", f"junit:{junit}")
    assert code == 0, err
    report = json.loads(out)
    [target] = report["targets"]
    coverage = target["coverage"]
    assert coverage["EG104"]["status"] == "skipped" and "sequence-first" in coverage["EG104"]["reason"]
    assert coverage["EG401"] == {"status": "skipped", "reason": "ONNX checks turned off (--no-onnx)"}
    assert coverage["EG101"]["status"] == "passed"
    assert coverage["EG903"]["status"] == "not-applicable"

    page = html.read_text()
    assert "Safe to deploy" not in page
    assert "did not run" in page and "sequence-first" in page

    cases = {case.get("name").split()[0]: case for case in ET.parse(junit).getroot().iter("testcase")}
    assert cases["EG104"].find("skipped") is not None
    assert cases["EG401"].find("skipped") is not None
    assert cases["EG101"].find("skipped") is None and cases["EG101"].find("failure") is None
    assert "EG903" not in cases                      # not applicable to a model


def test_lstm_text_output_lists_rules_that_did_not_run(run_cli, lstm):
    code, out, _ = run_cli("check", "--model", lstm, "--input-shape", "5x2x8", "--no-onnx")
    assert code == 0
    assert "all checks passed" not in out
    assert "not checked: EG104: the batch dimension is unknown" in out
    assert "rules did not run" in out.splitlines()[-1]


def test_bug_in_the_loader_is_eg900_not_the_files_fault(run_cli, tmp_path, monkeypatch):
    import torch

    from evalguard.loading import checkpoint_layouts

    path = tmp_path / "sd.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)

    def broken(*args, **kwargs):
        raise KeyError("evalguard bug")

    monkeypatch.setattr(checkpoint_layouts, "interpret", broken)
    code, out, err = run_cli("check", path, "--format", "json")
    report = json.loads(out)
    assert code == 2
    assert [f["rule"] for f in report["findings"]] == ["EG900"]
    assert report["findings"][0]["evidence"]["check"] == "loader"
    assert "internal error in evalguard's loader" in report["targets"][0]["detail"]
    assert "cannot be loaded" not in err


def test_bug_in_the_onnx_comparison_is_eg900_not_an_onnx_finding(run_cli, tmp_path, monkeypatch):
    from evalguard.checks.onnx import compare

    factory = tmp_path / "tiny.py"
    factory.write_text("import torch\n\ndef build():\n    torch.manual_seed(0)\n"
                       "    return torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()\n")

    def broken(*args, **kwargs):
        raise ZeroDivisionError("evalguard bug")

    monkeypatch.setattr(compare, "row", broken)
    code, out, _ = run_cli("check", "--model", f"{factory}:build", "--input-shape", "2x4", "--format", "json")
    report = json.loads(out)
    rules = [f["rule"] for f in report["findings"]]
    assert rules == ["EG900"]
    assert report["findings"][0]["evidence"]["check"] == "check 'onnx-parity'"
    coverage = report["targets"][0]["coverage"]
    assert {coverage[r]["status"] for r in ("EG401", "EG404")} == {"skipped"}
    assert code == 2                                 # an internal crash left rules unchecked: exit 2


@pytest.mark.parametrize("flag", ["--output", "--report", "--baseline"])
def test_unwritable_output_paths_fail_before_any_target_is_loaded(run_cli, tmp_path, monkeypatch, flag):
    from evalguard.loading import formats

    loaded = []
    monkeypatch.setattr(formats, "load_model_file", lambda *a, **k: loaded.append(a))
    missing = tmp_path / "no" / "such" / "dir" / "out.txt"
    value = f"json:{missing}" if flag == "--report" else str(missing)
    (tmp_path / "m.pt").write_bytes(b"not really a model")
    code, out, err = run_cli("check", tmp_path / "m.pt", flag, value)
    assert code == 2
    assert err.startswith(f"error: {flag} ") and "no such directory" in err
    assert len(err.strip().splitlines()) == 1
    assert loaded == []


def test_refused_file_reports_every_rule_skipped_with_the_refusal(run_cli, tmp_path):
    import pickle

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"f": eval}, protocol=2))   # references builtins.eval: refused
    code, out, _ = run_cli("check", path, "--format", "json")
    target = json.loads(out)["targets"][0]
    assert code == 2 and target["status"] == "refused"
    coverage = target["coverage"]
    assert coverage["EG901"]["status"] == "failed"
    others = {rule: c for rule, c in coverage.items() if not rule.startswith("EG90")}
    assert others and all(c["status"] == "skipped" for c in others.values()), others
    assert all(c["reason"].startswith("the file was refused: ") for c in others.values())
    assert "does not apply" not in json.dumps(coverage)


def test_file_that_cannot_be_loaded_still_gets_coverage(run_cli, tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"PK\x03\x04 not really a zip archive")
    code, out, _ = run_cli("check", path, "--format", "json")
    target = json.loads(out)["targets"][0]
    assert code == 2 and target["status"] == "error"
    coverage = target["coverage"]
    assert set(coverage) >= {"EG101", "EG201", "EG401"}
    assert {c["status"] for c in coverage.values()} == {"skipped"}
    assert all(c["reason"].startswith("could not be loaded: ") and str(path) not in c["reason"]
               for c in coverage.values())
