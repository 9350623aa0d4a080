"""What is audited: inputs that fit the model (from an --onnx file, in --input-dtype), modules in
the current directory, --model together with targets, checkpoints without --model, and one
error line per target that cannot be audited."""
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

NET = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        """Takes 3x12x12 images only: a first-layer guess (32x32) would not fit the Linear."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 12 * 12, 5)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))


    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            return self.fc(x)


    def build():
        torch.manual_seed(0)
        return Net().eval()


    def build_double():
        torch.manual_seed(0)
        return Mlp().double().eval()
''')


@pytest.fixture
def isolated_imports(monkeypatch):
    """sys.path and the modules a test imports are put back afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("eg_t_"):
            del sys.modules[name]


@pytest.fixture
def net(tmp_path) -> Path:
    path = tmp_path / "net.py"
    path.write_text(NET)
    return path


def json_report(run_cli, *args):
    code, out, err = run_cli("check", *map(str, args), "--format", "json")
    return code, (json.loads(out) if out.strip() else None), err


def _export(model, path: Path) -> None:
    torch.onnx.export(model, (torch.randn(2, 3, 12, 12),), str(path), input_names=["image"],
                      dynamic_axes={"image": {0: "batch"}}, dynamo=False)


# ---------------------------------------------------------------- inputs from an --onnx file
def test_onnx_file_gives_the_inputs_matching_export_passes_stale_one_is_eg401(run_cli, tmp_path, net):
    import runpy

    model = runpy.run_path(str(net))["build"]()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    _export(model, tmp_path / "good.onnx")
    with torch.no_grad():
        model.fc.bias += 1.0
    _export(model, tmp_path / "stale.onnx")

    code, report, err = json_report(run_cli, tmp_path / "w.pt", "--model", f"{net}:build", "--onnx",
                                    tmp_path / "good.onnx", "--select", "EG4")
    assert code == 0, (err, report and report["findings"])
    (target,) = report["targets"]
    assert target["coverage"]["EG401"]["status"] == "passed"
    inputs = target["facts"]["inputs"]
    assert inputs["inputs"] == ["image: float32[2, 3, 12, 12]"]   # the graph input's name (issue 30)
    assert "good.onnx" in inputs["source"] and "image" in inputs["source"] and "batch=2" in inputs["source"]

    code, report, err = json_report(run_cli, tmp_path / "w.pt", "--model", f"{net}:build", "--onnx",
                                    tmp_path / "stale.onnx", "--select", "EG4")
    assert code == 1, err
    assert [f["rule"] for f in report["findings"]] == ["EG401"]


def test_onnx_target_dynamic_dims_are_stated(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from evalguard.loading import load_target
    from evalguard.subject import AuditOptions

    graph = helper.make_graph(
        [helper.make_node("Identity", ["ids"], ["out"])], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("out", TensorProto.INT64, ["batch", "seq"])])
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    subject = load_target(str(tmp_path / "m.onnx"), AuditOptions())
    (ids,) = subject.inputs.args
    assert ids.dtype == torch.int64 and tuple(ids.shape) == (2, 16)
    assert "batch=2" in subject.inputs.source and "seq=16" in subject.inputs.source


def test_input_dtype_is_honoured_when_the_shape_is_inferred(run_cli, tmp_path, net):
    code, report, err = json_report(run_cli, "--model", f"{net}:build_double", "--input-dtype", "float64",
                                    "--no-onnx", "--select", "EG1")
    assert code == 0, (err, report and report["targets"])
    (target,) = report["targets"]
    assert target["status"] == "audited"
    assert target["facts"]["inputs"]["inputs"] == ["arg0: float64[2, 6]"]
    assert "--input-dtype float64" in target["facts"]["inputs"]["source"]


# ---------------------------------------------------------------- the current directory is importable
def test_model_factory_module_in_the_current_directory(run_cli, tmp_path, monkeypatch, isolated_imports):
    (tmp_path / "eg_t_factory.py").write_text(NET)
    monkeypatch.chdir(tmp_path)
    sys.path[:] = [p for p in sys.path if p not in ("", str(tmp_path))]
    code, report, err = json_report(run_cli, "--model", "eg_t_factory:build", "--no-onnx", "--select", "EG1",
                                    "--input-shape", "2x3x12x12")
    assert code == 0, err
    assert report["targets"][0]["status"] == "audited"


def test_trust_module_in_the_current_directory(run_cli, tmp_path, monkeypatch, isolated_imports):
    (tmp_path / "eg_t_trusted.py").write_text(NET)
    sys.path.insert(0, str(tmp_path))
    import eg_t_trusted

    torch.save(eg_t_trusted.build(), tmp_path / "full.pt")
    del sys.modules["eg_t_trusted"]
    sys.path[:] = [p for p in sys.path if p not in ("", str(tmp_path))]
    monkeypatch.chdir(tmp_path)
    code, report, err = json_report(run_cli, "full.pt", "--trust-module", "eg_t_trusted", "--no-onnx",
                                    "--select", "EG1,EG901,EG902", "--input-shape", "2x3x12x12")
    assert code == 0, (err, report and report["findings"])
    assert report["targets"][0]["status"] == "audited"


def test_trust_module_that_cannot_be_imported_is_a_usage_error(run_cli, tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "m.pt")
    code, out, err = run_cli("check", tmp_path / "m.pt", "--trust-module", "eg_t_no_such_package")
    assert code == 2
    assert out == ""
    assert err.splitlines() == [err.strip()] and err.startswith("error: --trust-module eg_t_no_such_package:")
    assert "EG901" not in err


# ---------------------------------------------------------------- --model together with targets
def test_model_with_a_target_that_does_not_take_it_audits_both(run_cli, tmp_path, net):
    torch.save(torch.nn.Linear(4, 2).eval(), tmp_path / "full.pt")
    _, report, _ = json_report(run_cli, tmp_path / "full.pt", "--model", f"{net}:build",
                                    "--input-shape", "2x3x12x12", "--no-onnx", "--select", "EG1")
    paths = [t["path"] for t in report["targets"]]
    assert paths == [str(tmp_path / "full.pt"), f"{net}:build"]
    assert report["targets"][1]["kind"] == "factory"


def test_model_with_a_source_target_audits_both(run_cli, tmp_path, net):
    (tmp_path / "infer.py").write_text("import torch\n")
    _, report, _ = json_report(run_cli, tmp_path / "infer.py", "--model", f"{net}:build",
                                    "--input-shape", "2x3x12x12", "--no-onnx")
    assert [t["kind"] for t in report["targets"]] == ["python-source", "factory"]


def test_model_used_as_the_architecture_is_not_audited_twice(run_cli, tmp_path, net):
    import runpy

    torch.save(runpy.run_path(str(net))["build"]().state_dict(), tmp_path / "w.pt")
    _, report, _ = json_report(run_cli, tmp_path / "w.pt", "--model", f"{net}:build",
                               "--input-shape", "2x3x12x12", "--no-onnx")
    assert [t["path"] for t in report["targets"]] == [str(tmp_path / "w.pt")]
    assert report["targets"][0]["facts"]["load"]["weights"]["architecture"] == f"--model {net}:build"


# ---------------------------------------------------------------- checkpoints without --model
def _adam_checkpoint(path: Path, with_optimizer: bool = True) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    optimizer = torch.optim.Adam(model.parameters(), weight_decay=0.01)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    checkpoint = {"epoch": 1, "model": model.state_dict()}
    if with_optimizer:
        checkpoint["optimizer"] = optimizer.state_dict()
    torch.save(checkpoint, path)


def test_checkpoint_without_model_runs_the_optimizer_rules_and_skips_the_rest(run_cli, tmp_path):
    _adam_checkpoint(tmp_path / "ckpt.pt")
    _, report, err = json_report(run_cli, tmp_path / "ckpt.pt")
    (target,) = report["targets"]
    assert target["status"] == "audited", target
    assert "EG301" in {f["rule"] for f in report["findings"]}
    assert target["coverage"]["EG301"]["status"] == "failed"
    for rule in ("EG101", "EG207", "EG208", "EG401"):
        assert target["coverage"][rule]["status"] == "skipped"
        assert "--model" in target["coverage"][rule]["reason"]
    assert err == ""


def test_checkpoint_without_model_or_optimizer_is_one_error_line(run_cli, tmp_path):
    _adam_checkpoint(tmp_path / "ckpt.pt", with_optimizer=False)
    code, _, err = run_cli("check", tmp_path / "ckpt.pt")
    assert code == 2
    expected = (f"error: {tmp_path / 'ckpt.pt'}: is a checkpoint holding a state_dict; "
                "pass --model MODULE:CALLABLE to give its architecture")
    assert err.splitlines() == [expected]


# ---------------------------------------------------------------- one error line per target
def test_each_unauditable_target_is_one_error_line_naming_it(run_cli, tmp_path, net):
    import runpy

    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save(runpy.run_path(str(net))["build"]().state_dict(), tmp_path / "w.pt")
    # --input-shape that the Linear cannot take: the forward fails (user code), after loading
    code, _, err = run_cli("check", tmp_path / "empty.pt", tmp_path / "w.pt", "--model", f"{net}:build",
                             "--input-shape", "2x3x8x8", "--no-onnx")
    assert code == 2
    progress = [line for line in err.splitlines() if line.startswith("evalguard: [")]   # no terminal: one per target
    lines = [line for line in err.splitlines() if line not in progress]
    assert len(lines) == 2 and len(progress) == 2, err
    assert lines[0] == f"error: {tmp_path / 'empty.pt'}: empty file"
    assert lines[1].startswith(f"error: {tmp_path / 'w.pt'}: forward failed")


# ---------------------------------------------------------------- folders hold models too
def test_a_folder_yields_its_model_files_hf_folders_and_sources(tmp_path):
    from evalguard.loading.discover import expand_targets

    root = tmp_path / "project"
    (root / "ckpts").mkdir(parents=True)
    (root / "hf").mkdir()
    (root / "hf" / "model.safetensors").write_bytes(b"x")
    (root / "hf" / "config.json").write_text("{}")
    (root / "hf" / "helper.py").write_text("")          # inside the HF folder: part of that model
    for name in ("ckpts/last.ckpt", "ckpts/best.pt", "model.onnx", "prog.pt2", "w.safetensors", "train.py",
                 "notes.txt", "data.bin", "ckpts/old.pt"):
        (root / name).write_bytes(b"")
    found = expand_targets([str(root)], exclude=("old.pt",))
    assert [os.path.relpath(p, root) for p in found] == sorted(
        ["ckpts/best.pt", "ckpts/last.ckpt", "hf", "model.onnx", "prog.pt2", "train.py", "w.safetensors"])


def test_excluded_folders_are_not_walked(tmp_path):
    from evalguard.loading.discover import expand_targets

    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "x.pt").write_bytes(b"")
    (tmp_path / "m.pt").write_bytes(b"")
    assert expand_targets([str(tmp_path)], exclude=("runs",)) == [str(tmp_path / "m.pt")]


def test_a_folder_of_model_files_only_is_audited(run_cli, tmp_path):
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 2)).eval(), tmp_path / "a.pt")
    _adam_checkpoint(tmp_path / "b.pt")
    _, report, err = json_report(run_cli, tmp_path, "--input-shape", "2x4", "--no-onnx")
    assert [Path(t["path"]).name for t in report["targets"]] == ["a.pt", "b.pt"]
    assert all(t["status"] == "audited" for t in report["targets"]), err
    assert "EG301" in {f["rule"] for f in report["findings"]}


def test_full_module_pickle_with_onnx_file_and_no_input_shape(run_cli, tmp_path):
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 12, 5)).eval()
    torch.save(model, tmp_path / "model.pt")
    _export(model, tmp_path / "model.onnx")
    code, report, err = json_report(run_cli, tmp_path / "model.pt", "--onnx", tmp_path / "model.onnx",
                                    "--select", "EG4")
    assert code == 0, (err, report and report["targets"])
    assert report["targets"][0]["coverage"]["EG401"]["status"] == "passed"
