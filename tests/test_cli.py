"""The command line: exit codes, one-line errors, formats, output files, lazy imports."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from evalguard.catalogue import load_catalogue

REPO = Path(__file__).resolve().parent.parent


def test_rules_lists_every_rule_with_status(run_cli):
    code, out, err = run_cli("rules")
    assert code == 0
    for rule in load_catalogue().values():
        line = next(line for line in out.splitlines() if line.startswith(rule.id))
        assert rule.name in line and str(rule.severity) in line and rule.status in line


def test_rules_json(run_cli):
    code, out, _ = run_cli("rules", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == len(load_catalogue()) and {"id", "name", "severity", "status"} <= set(rows[0])


def test_explain_renders_sections(run_cli):
    code, out, _ = run_cli("explain", "eg201")
    assert code == 0
    assert out.startswith("# EG201 dropout-before-batchnorm")
    assert "## Why is this bad?" in out and "## How to fix it" in out
    assert "variance" in out.lower()


def test_explain_by_name(run_cli):
    code, out, _ = run_cli("explain", "adam-coupled-weight-decay")
    assert code == 0 and out.startswith("# EG301")


@pytest.mark.parametrize("args,needle", [
    (["explain", "EG999"], "unknown rule"),
    (["check"], "nothing to check"),
    (["check", "--bogus"], "No such option"),
    (["check", "--select", "EG999", "x.py"], "EG999"),
    (["check", "--input-shape", "4xx3", "--model", "m:f"], "malformed --input-shape"),
    (["check", "--input-shape", "4x0", "--model", "m:f"], "must be positive"),
    (["check", "--input-dtype", "complex7", "--model", "m:f"], "unknown --input-dtype"),
    (["check", "--onnx", "a.onnx", "--no-onnx", "--model", "m:f"], "cannot be used together"),
    (["check", "--format", "pdf", "x.py"], "pdf"),
    (["check", "--model", "no_colon_here"], "--model expects"),
    (["check", "--model", "evalguard_no_such_pkg:build"], "cannot import"),
])
def test_usage_errors_are_one_line_exit_2(run_cli, args, needle):
    code, out, err = run_cli(*args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert needle in lines[0]
    assert "Traceback" not in err + out


def test_missing_target_exit_2(run_cli, tmp_path):
    code, out, err = run_cli("check", tmp_path / "missing.pt")
    assert code == 2
    assert err.strip().splitlines() == [f"error: {tmp_path / 'missing.pt'}: no such file or directory"]


def test_empty_directory_exit_2(run_cli, tmp_path):
    code, _, err = run_cli("check", tmp_path)
    assert code == 2 and "nothing to audit" in err or "no model files" in err


def test_factory_that_raises_is_a_clean_error(run_cli, tmp_path):
    factory = tmp_path / "f.py"
    factory.write_text("def build():\n    raise ValueError('bad config')\n")
    code, _, err = run_cli("check", "--model", f"{factory}:build")
    assert code == 2 and "raised ValueError: bad config" in err and "Traceback" not in err


def test_factory_returning_non_module(run_cli, tmp_path):
    factory = tmp_path / "f.py"
    factory.write_text("def build():\n    return 42\n")
    code, _, err = run_cli("check", "--model", f"{factory}:build")
    assert code == 2 and "not a torch.nn.Module" in err


def test_debug_shows_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "evalguard", "check", "--debug", "--model", "nope_pkg_x:f"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_python_m_evalguard_works():
    proc = subprocess.run([sys.executable, "-m", "evalguard", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "evalguard" in proc.stdout


@pytest.mark.parametrize("argv", [["--help"], ["rules"], ["explain", "EG301"], ["check", "--help"]])
def test_cheap_commands_do_not_import_torch(argv):
    code = ("import sys\nfrom evalguard.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'numpy') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_json_output_file_and_exit_code_for_findings(run_cli, tmp_path):
    source = tmp_path / "serve.py"
    source.write_text("import torch\nmodel = torch.load('m.pt', weights_only=False)\n")
    out_file = tmp_path / "report.json"
    code, out, err = run_cli("check", source, "--format", "json", "--output", out_file, "--select", "EG903")
    report = json.loads(out_file.read_text())
    assert out == ""
    assert report["schema_version"] == 2
    assert report["tool"]["name"] == "evalguard"
    assert report["targets"] == [{"path": str(source), "kind": "python-source", "status": "audited",
                                  "coverage": {"EG903": {"status": "failed", "reason": None}}}]
    [finding] = report["findings"]
    assert finding["rule"] == "EG903" and finding["severity"] == "error"
    assert finding["location"]["path"] == str(source) and finding["location"]["line"] == 2
    assert report["summary"] == {"error": 1, "warning": 0, "info": 0}
    assert code == 1


def test_fail_on_and_ignore_change_exit_code(run_cli, tmp_path):
    source = tmp_path / "serve.py"
    source.write_text("import torch\nmodel = torch.load('m.pt', weights_only=False)\n")
    assert run_cli("check", source, "--select", "EG903")[0] == 1
    assert run_cli("check", source, "--ignore", "EG903")[0] == 0
    clean = tmp_path / "clean.py"
    clean.write_text("x = 1\n")
    code, out, _ = run_cli("check", clean, "--fail-on", "info")
    assert code == 0 and "all checks passed" in out


def test_text_output_line_format(run_cli, tmp_path):
    source = tmp_path / "serve.py"
    source.write_text("import torch\nmodel = torch.load('m.pt', weights_only=False)\n")
    code, out, _ = run_cli("check", source, "--select", "EG903")
    first = out.splitlines()[0]
    assert first.startswith(f"{source}:2:") and " EG903 error unsafe-torch-load: " in first
    assert "\033[" not in out  # no colour when not a terminal
    assert out.splitlines()[-1].startswith("1 target (1 audited): 1 error")


def test_directory_walk_respects_exclude(run_cli, tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("import torch\ntorch.load('x', weights_only=False)\n")
    (tmp_path / "pkg" / "gen").mkdir()
    (tmp_path / "pkg" / "gen" / "b.py").write_text("import torch\ntorch.load('x', weights_only=False)\n")
    code, out, _ = run_cli("check", tmp_path / "pkg", "--select", "EG903", "--format", "json")
    assert {Path(f["location"]["path"]).name for f in json.loads(out)["findings"]} == {"a.py", "b.py"}
    code, out, _ = run_cli("check", tmp_path / "pkg", "--select", "EG903", "--format", "json", "--exclude", "gen")
    assert {Path(f["location"]["path"]).name for f in json.loads(out)["findings"]} == {"a.py"}


def test_baseline_written_then_only_new_findings_reported(run_cli, tmp_path):
    source = tmp_path / "serve.py"
    source.write_text("import torch\nmodel = torch.load('m.pt', weights_only=False)\n")
    baseline = tmp_path / "baseline.json"
    code, out, _ = run_cli("check", source, "--select", "EG903", "--baseline", baseline, "--format", "json")
    assert baseline.is_file() and code == 1 and len(json.loads(out)["findings"]) == 1
    code, out, _ = run_cli("check", source, "--select", "EG903", "--baseline", baseline, "--format", "json")
    assert code == 0 and json.loads(out)["findings"] == []
    source.write_text(source.read_text() + "other = torch.load('n.pt', weights_only=False)\n")
    code, out, _ = run_cli("check", source, "--select", "EG903", "--baseline", baseline, "--format", "json")
    assert code == 1 and [f["location"]["line"] for f in json.loads(out)["findings"]] == [3]


def test_corrupt_baseline_is_a_usage_error(run_cli, tmp_path):
    source = tmp_path / "serve.py"
    source.write_text("x = 1\n")
    baseline = tmp_path / "baseline.json"
    baseline.write_text("{not json")
    code, _, err = run_cli("check", source, "--baseline", baseline)
    assert code == 2 and err.startswith("error: --baseline:") and len(err.strip().splitlines()) == 1


def test_onnx_exporter_choice_is_recorded(run_cli, tmp_path):
    factory = tmp_path / "tiny.py"
    factory.write_text("import torch\n\ndef build():\n    torch.manual_seed(0)\n"
                       "    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()\n")
    for choice in ("auto", "dynamo"):
        code, out, err = run_cli("check", "--model", f"{factory}:build", "--input-shape", "2x4",
                                 "--onnx-exporter", choice, "--select", "EG4", "--format", "json")
        onnx = json.loads(out)["targets"][0]["facts"]["onnx"]
        assert code == 0, err
        assert onnx["exporter"] == ("torchscript" if choice == "auto" else "dynamo")
        assert onnx["parity"] and all(row["passed"] for row in onnx["parity"])


def test_onnx_exporter_config_is_validated(run_cli, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.evalguard]\nonnx-exporter = "fast"\n')
    (tmp_path / "a.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("check", "a.py")
    assert code == 2 and "onnx-exporter must be" in err


def test_extra_reports_from_one_run(run_cli, tmp_path):
    source = tmp_path / "serve.py"
    source.write_text("import torch\nmodel = torch.load('m.pt', weights_only=False)\n")
    html, sarif = tmp_path / "r.html", tmp_path / "r.sarif"
    code, out, _ = run_cli("check", source, "--select", "EG903", "--report", f"html:{html}",
                           "--report", f"sarif:{sarif}")
    assert code == 1 and "EG903" in out
    assert "EG903" in html.read_text() and html.read_text().lstrip().startswith("<!DOCTYPE html>")
    [result] = json.loads(sarif.read_text())["runs"][0]["results"]
    assert result["ruleId"] == "EG903"


@pytest.mark.parametrize("value", ["html", "pdf:x.pdf", "html:"])
def test_malformed_extra_report(run_cli, tmp_path, value):
    (tmp_path / "a.py").write_text("x = 1\n")
    code, _, err = run_cli("check", tmp_path / "a.py", "--report", value)
    assert code == 2 and "--report expects FORMAT:FILE" in err


# --- issue 30: usage errors found before any audit -------------------------------------------

def _run_without_torch(argv, cwd):
    """Run `evalguard ARGV` in a fresh interpreter; returns (exit code, stdout, stderr, torch imported)."""
    code = ("import sys, atexit\nfrom evalguard.cli import main\n"
            "atexit.register(lambda: print('TORCH', 'torch' in sys.modules, file=sys.stderr))\n"
            f"main({argv!r})\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
    lines = proc.stderr.strip().splitlines()
    return proc.returncode, proc.stdout, lines[:-1], lines[-1] == "TORCH True"


@pytest.mark.parametrize("argv,needle", [
    (["check", "--model", "evalguard_no_such_pkg:build"], "--model: cannot import evalguard_no_such_pkg"),
    (["check", "--model", "mynet"], "--model expects MODULE:CALLABLE"),
    (["check", "--model", "missing/file.py:build"], "--model: no such file missing/file.py"),
    (["check", "--model", "torch.nn:Linear", "--input-shape", "1000000x1000000"],
     "--input-shape 1000000x1000000: the inputs need 3.6 TiB"),
])
def test_usage_errors_before_the_audit_and_without_torch(tmp_path, argv, needle):
    code, out, err, imported_torch = _run_without_torch(argv, tmp_path)
    assert code == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert not imported_torch


def test_unallocatable_input_from_config_is_a_usage_error(run_cli, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.evalguard]\ninput-shape = ["100000x100000x1000"]\n')
    factory = tmp_path / "f.py"
    factory.write_text("raise SystemExit('the factory must not be imported')\n")
    code, out, err = run_cli("check", "--model", f"{factory}:build", "--input-dtype", "int64", tmp_path / "f.py")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [err.strip()] and "(int64), more than the" in err


def test_failed_forward_reason_is_said_once(run_cli, tmp_path):
    """--input-dtype int64 on a conv net: the forward fails once, and the target's error says so once
    (the ONNX check words the same failure without the inputs' description)."""
    factory = tmp_path / "f.py"
    factory.write_text("from torch import nn\n\ndef build():\n"
                       "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()\n")
    code, out, err = run_cli("check", "--model", f"{factory}:build", "--input-shape", "1x3x8x8",
                             "--input-dtype", "int64")
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2
    assert line.count("forward failed") == 1, line
    assert line.count("should be the same") == 1, line


# --- issue 30: wording that says what is true ---------------------------------------------------

NET = """import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3),
                         nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 16),
                         nn.ReLU(), nn.Linear(16, 4))
"""


def _trained_state_dict(tmp_path, seed: int) -> Path:
    import torch

    namespace: dict = {}
    exec(NET, namespace)
    model = namespace["build"]()
    torch.manual_seed(seed)
    for _ in range(3):
        model(torch.randn(4, 3, 8, 8))
    path = tmp_path / f"weights{seed}.pt"
    torch.save(model.eval().state_dict(), path)
    return path


def test_state_dict_with_training_mode_factory_says_the_file_has_no_mode(run_cli, tmp_path):
    (tmp_path / "net.py").write_text(NET)
    weights = _trained_state_dict(tmp_path, seed=1)
    html = tmp_path / "r.html"
    code, out, _ = run_cli("check", weights, "--model", f"{tmp_path / 'net.py'}:build", "--input-shape", "2x3x8x8",
                           "--no-onnx", "--select", "EG101", "--format", "json", "--report", f"html:{html}")
    [finding] = json.loads(out)["findings"]
    assert code == 1 and finding["rule"] == "EG101"
    assert "the file holds weights only and carries no train/eval mode" in finding["message"]
    assert f"the factory {tmp_path / 'net.py'}:build returns the model in training mode" in finding["message"]
    page = html.read_text()
    assert "Saved in training mode" not in page
    assert "Mode saved in the file</dt><dd>none (weights only)" in page
    assert "Factory returns it in training mode" in page


def test_stale_onnx_hint_counts_the_tensors_it_compared(run_cli, tmp_path):
    """A conv/BatchNorm/Linear net has 12 weight tensors; BatchNorm folding leaves three Linear
    tensors to compare by value, and the hint must not call them 'the model's 3 weight tensors'."""
    import torch

    (tmp_path / "net.py").write_text(NET)
    weights = _trained_state_dict(tmp_path, seed=1)
    namespace: dict = {}
    exec(NET, namespace)
    old = namespace["build"]()
    for param in old.parameters():
        torch.nn.init.normal_(param)
    stale = tmp_path / "stale.onnx"
    torch.onnx.export(old.eval(), (torch.randn(2, 3, 8, 8),), str(stale), dynamo=False)
    code, out, _ = run_cli("check", weights, "--model", f"{tmp_path / 'net.py'}:build", "--input-shape", "2x3x8x8", "--onnx", stale,
                           "--select", "EG401", "--format", "json")
    [finding] = [f for f in json.loads(out)["findings"] if f["rule"] == "EG401"]
    assert "the model's 3 weight tensors" not in finding["message"]
    assert "None of 3 weight tensors compared by value (of the model's 12;" in finding["message"], finding["message"]


TAGGER = """class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask):
        return self.head(self.embed(input_ids) * attention_mask.unsqueeze(-1).float())
"""


def test_onnx_file_inputs_keep_the_graph_names(run_cli, tmp_path):
    """A dynamo-exported file names its inputs after the forward's parameters; the report uses them."""
    import torch

    namespace: dict = {"torch": torch}
    exec(TAGGER, namespace)
    Tagger = namespace["Tagger"]
    path = tmp_path / "tagger.onnx"
    ids, mask = torch.randint(0, 50, (2, 5)), torch.ones(2, 5, dtype=torch.int64)
    torch.onnx.export(Tagger().eval(), (ids, mask), str(path), dynamo=True)
    factory = tmp_path / "tagger.py"
    factory.write_text("import torch\n\n" + TAGGER + "\n\ndef build():\n    return Tagger().eval()\n")
    code, out, _ = run_cli("check", "--model", f"{factory}:build", "--onnx", path, "--select", "EG401")
    inputs_line = next(line for line in out.splitlines() if ": inputs " in line)
    assert "inputs input_ids: int64[2, 5], attention_mask: int64[2, 5] (graph inputs" in inputs_line, inputs_line
    assert "arg0" not in inputs_line and "arg1" not in inputs_line


def test_torchscript_findings_name_the_original_type(run_cli, tmp_path):
    """EG206 on a scripted model: the Dropout is a `Dropout2d`, not a `RecursiveScriptModule`."""
    import torch
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Dropout2d(0.3), nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8)).eval()
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    code, out, _ = run_cli("check", path, "--input-shape", "2x3x16x16", "--select", "EG206", "--format", "json")
    [finding] = json.loads(out)["findings"]
    assert finding["rule"] == "EG206"
    assert finding["message"].startswith("Dropout2d `1` (p=0.3)"), finding["message"]
    assert "RecursiveScriptModule" not in json.dumps(finding)


# --- issue 30: walking a folder -------------------------------------------------------------------

def test_walked_folder_finds_bin_and_extensionless_models_by_content(run_cli, tmp_path):
    import torch
    from torch import nn

    scripted = torch.jit.script(nn.Sequential(nn.Linear(4, 2)).eval())
    torch.jit.save(scripted, str(tmp_path / "classifier.bin"))
    torch.jit.save(scripted, str(tmp_path / "exported_model"))
    (tmp_path / "vocab.bin").write_bytes(bytes(range(256)) * 8)       # data, not a model
    (tmp_path / "NOTES").write_text("not a model\n")
    code, out, _ = run_cli("check", tmp_path, "--select", "EG207", "--no-onnx", "--no-isolate", "--format", "json")
    paths = sorted(Path(t["path"]).name for t in json.loads(out)["targets"])
    assert paths == ["classifier.bin", "exported_model"], paths
    assert code == 0


def test_walked_source_files_use_their_nearest_config(run_cli, tmp_path):
    """As in ruff: a file found by walking a folder takes the config nearest to it, not the folder's."""
    bad = "import torch\nmodel = torch.load('m.pt', weights_only=False)\n"
    (tmp_path / "pyproject.toml").write_text('[tool.evalguard]\nselect = ["EG903"]\n')
    (tmp_path / "serve.py").write_text(bad)
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy" / "pyproject.toml").write_text('[tool.evalguard]\nignore = ["EG903"]\n')
    (tmp_path / "legacy" / "old_serve.py").write_text(bad)
    code, out, _ = run_cli("check", tmp_path, "--format", "json")
    report = json.loads(out)
    assert sorted(Path(t["path"]).name for t in report["targets"]) == ["old_serve.py", "serve.py"]
    assert [Path(f["location"]["path"]).name for f in report["findings"]] == ["serve.py"]
    assert code == 1
    assert sorted(report["run"]["configs"]) == sorted([str(tmp_path / "pyproject.toml"),
                                                      str(tmp_path / "legacy" / "pyproject.toml")])


# --- issue 30: the demo -------------------------------------------------------------------------

DEMO = REPO / "examples" / "demo" / "model.py"


def test_demo_prints_its_root_cause_first_and_json_keeps_its_sort(run_cli):
    args = ("check", "--model", f"{DEMO}:build_model", "--input-shape", "2x3x32x32", "--no-onnx")
    code, out, _ = run_cli(*args)
    rules = [line.split()[1] for line in out.splitlines() if " EG" in line and ": not checked" not in line]
    assert code == 1 and rules[0] == "EG101" and set(rules) == {"EG101", "EG102", "EG201", "EG206"}, rules
    _, out, _ = run_cli(*args, "--format", "json")
    findings = json.loads(out)["findings"]
    keys = [(f["location"]["path"], f["location"].get("line") or 0, f["location"].get("column") or 0,
             f["location"].get("module") or "", f["rule"]) for f in findings]
    assert keys == sorted(keys)


def test_readme_says_the_demo_exits_1_by_design():
    readme = (REPO / "README.md").read_text()
    demo = readme[readme.index("Run the demo"):readme.index("Install the test dependencies")]
    assert "exits with code 1 on purpose" in demo and "EG101" in demo and "good_model" in demo
