"""One error boundary: evalguard's own steps that break are EG900 naming the step, never a
finding or an error blamed on the user's file, and EG900 cannot be deselected or downgraded."""
import json

import pytest

BRANCHY = (
    "import torch\n"
    "from torch import nn\n\n"
    "class Branchy(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.a = nn.Linear(4, 4)\n"
    "        self.b = nn.Linear(4, 3)\n\n"
    "    def forward(self, x):\n"
    "        h = self.a(x)\n"
    "        if h.sum() > -1e9:   # data-dependent: torch.fx cannot trace it, the hooks view is used\n"
    "            h = torch.relu(h)\n"
    "        return self.b(h)\n\n"
    "def build():\n"
    "    torch.manual_seed(0)\n"
    "    return Branchy().eval()\n"
)


@pytest.fixture
def branchy(tmp_path):
    path = tmp_path / "branchy.py"
    path.write_text(BRANCHY)
    return f"{path}:build"


@pytest.fixture
def broken_recorder(monkeypatch):
    from evalguard.checks.architecture import dataflow

    def broken(self, tensors, index):
        raise KeyError("recorder bookkeeping bug")

    monkeypatch.setattr(dataflow._Recorder, "produced", broken)


def crashes(report: dict) -> list[dict]:
    return [f for f in report["findings"] if f["rule"] == "EG900"]


def test_recorder_riding_on_the_eval_forward_is_eg900_not_a_failed_forward(run_cli, branchy, broken_recorder):
    code, out, err = run_cli("check", "--model", branchy, "--input-shape", "2x4", "--no-onnx", "--format", "json")
    report = json.loads(out)
    target = report["targets"][0]
    assert target["status"] == "audited", target["detail"]       # the model's forward did not fail
    assert "forward failed" not in err and "forward failed" not in json.dumps(report)
    [crash] = crashes(report)                                     # exactly one, naming the step
    assert "dataflow recorder" in crash["evidence"]["check"]
    assert crash["evidence"]["exception"] == "KeyError"
    assert [f["rule"] for f in report["findings"]] == ["EG900"]
    assert target["coverage"]["EG103"]["status"] == "passed"      # the pass it rode on still judged EG103
    assert target["coverage"]["EG201"]["status"] == "skipped"
    assert code == 2
    assert "EG900" in err and len(err.strip().splitlines()) == 1


def test_internal_crash_exits_2_with_a_selection_that_leaves_eg900_out(run_cli, branchy, broken_recorder):
    code, out, err = run_cli("check", "--model", branchy, "--input-shape", "2x4", "--no-onnx",
                             "--select", "EG2", "--format", "json")
    report = json.loads(out)
    [crash] = crashes(report)
    assert "dataflow recorder" in crash["evidence"]["check"]
    assert crash["severity"] == "error"
    assert report["targets"][0]["status"] == "audited"
    assert code == 2
    assert err.startswith("error: ") and "internal error in evalguard" in err


def test_eg900_cannot_be_ignored_or_downgraded(run_cli, branchy, broken_recorder, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.evalguard]\nignore = ["EG900"]\n[tool.evalguard.severity]\nEG900 = "info"\n')
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli("check", "--model", branchy, "--input-shape", "2x4", "--no-onnx",
                           "--ignore", "EG900", "--format", "json")
    [crash] = crashes(json.loads(out))
    assert crash["severity"] == "error"
    assert code == 2


def test_engine_keeps_eg900_and_refusals_whatever_the_selection():
    from evalguard.engine import apply_policy
    from evalguard.findings import Finding, Location, Severity
    from evalguard.subject import AuditOptions

    findings = [Finding("EG900", "crash", Location("m.pt")), Finding("EG901", "unsafe", Location("m.pt")),
                Finding("EG201", "layout", Location("m.pt"))]
    kept = apply_policy(findings, AuditOptions(selected=frozenset({"EG101"})),
                        {"EG900": Severity.INFO, "EG901": Severity.INFO})
    assert [(f.rule, f.severity) for f in kept] == [("EG900", Severity.ERROR), ("EG901", Severity.ERROR)]


def saved_state_dict(tmp_path):
    import torch

    path = tmp_path / "sd.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    return path


def test_bug_in_the_pickle_scanner_is_eg900_not_a_corrupt_pickle(run_cli, tmp_path, monkeypatch):
    from evalguard.loading import pickle_scan

    path = saved_state_dict(tmp_path)

    def broken(pid, storages):
        raise IndexError("scanner bookkeeping bug")

    monkeypatch.setattr(pickle_scan, "_record_storage", broken)
    code, out, err = run_cli("check", path, "--format", "json")
    report = json.loads(out)
    [crash] = crashes(report)
    assert "pickle scanner" in crash["evidence"]["check"] and crash["evidence"]["exception"] == "IndexError"
    assert [f["rule"] for f in report["findings"]] == ["EG900"]
    assert "corrupt" not in err and "corrupt" not in json.dumps(report)
    assert code == 2


def test_truncated_pickle_is_still_the_files_fault(run_cli, tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins")   # cut mid-pickle
    code, out, err = run_cli("check", path, "--format", "json")
    report = json.loads(out)
    assert crashes(report) == []
    assert code == 2 and "corrupt" in err


def test_bug_in_the_trial_child_set_up_is_eg900_not_a_refusal(tmp_path, monkeypatch, as_worker):
    """Inside the target's worker (the ``as_worker`` fixture: this process plays the worker, so
    the forked trial child inherits the patch), the worker's own path: ``audit_one`` on the
    target's loader, which trial-loads the TorchScript file in a sandboxed child."""
    import torch

    from evalguard import sandbox
    from evalguard.engine import audit_one
    from evalguard.execution import Target
    from evalguard.subject import AuditOptions

    path = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(2, 2).eval()).save(str(path))

    def broken(request):
        raise RuntimeError("trial set-up bug")

    monkeypatch.setattr(sandbox, "_enter_trial", broken)
    monkeypatch.delenv("EVALGUARD_SANDBOX_SPAWN", raising=False)
    options = AuditOptions(onnx_enabled=False)
    target = Target(0, str(path), str(path))
    result, findings = audit_one(lambda: target.load(options), target.display, options)
    assert [f.rule for f in findings] == ["EG900"]                     # no EG905 refusal
    assert "trial-load child set-up" in findings[0].evidence["check"]
    assert result.status == "error"
    assert "cannot be loaded" not in (result.detail or "") and "refused" not in (result.detail or "")


TINY = ("import torch\n\ndef build():\n    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()\n")


def test_bug_in_the_onnx_reference_rebuild_is_eg900_not_a_failed_forward(run_cli, tmp_path, monkeypatch):
    from evalguard.checks.onnx import export

    factory = tmp_path / "tiny.py"
    factory.write_text(TINY)

    def broken(self, tensors):
        raise AttributeError("rebuild bug")

    monkeypatch.setattr(export.CallSpec, "rebuild", broken)
    code, out, err = run_cli("check", "--model", f"{factory}:build", "--input-shape", "2x4", "--format", "json")
    report = json.loads(out)
    [crash] = crashes(report)
    assert "ONNX reference rebuild" in crash["evidence"]["check"]
    assert crash["evidence"]["exception"] == "AttributeError"
    assert [f["rule"] for f in report["findings"]] == ["EG900"]
    assert report["targets"][0]["status"] == "audited"
    assert "forward failed" not in err and "forward failed" not in json.dumps(report)
    assert code == 2


def test_bug_in_the_pt2_graph_rewrite_is_eg900_not_an_unloadable_file(tmp_path, monkeypatch, as_worker):
    """A .pt2 target is audited in its worker; this process plays the worker (``as_worker``) so
    the patch reaches the rewrite, on the worker's own path (``audit_one`` on the target's loader)."""
    import torch

    from evalguard.engine import audit_one
    from evalguard.execution import Target
    from evalguard.loading import exported
    from evalguard.subject import AuditOptions

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
    torch.export.save(torch.export.export(model.eval(), (torch.randn(2, 4),)), tmp_path / "m.pt2")
    monkeypatch.setattr(exported, "_TRAIN_ARG", None)      # the rewrite's own table breaks
    options = AuditOptions(onnx_enabled=False)
    target = Target(0, str(tmp_path / "m.pt2"), str(tmp_path / "m.pt2"))
    result, findings = audit_one(lambda: target.load(options), target.display, options)
    assert [f.rule for f in findings] == ["EG900"]
    assert ".pt2 graph rewrite" in findings[0].evidence["check"]
    assert result.status == "error" and "cannot be loaded" not in (result.detail or "")


@pytest.mark.parametrize("fmt, module", [("json", "json_report"), ("text", "text"), ("junit", "junit")])
def test_a_reporter_that_breaks_is_one_eg900_line_naming_it(run_cli, tmp_path, monkeypatch, fmt, module):
    import importlib

    reporter = importlib.import_module(f"evalguard.reporters.{module}")

    def broken(report, **options):
        raise KeyError("reporter bug")

    monkeypatch.setattr(reporter, "render", broken)
    factory = tmp_path / "tiny.py"
    factory.write_text(TINY)
    code, out, err = run_cli("check", "--model", f"{factory}:build", "--input-shape", "2x4", "--no-onnx",
                             "--format", fmt)
    assert code == 2
    assert err.strip().splitlines() == [f"error: internal error in evalguard's {fmt} reporter (EG900): "
                                        "KeyError: 'reporter bug'"]
    assert "Traceback" not in err and out == ""
