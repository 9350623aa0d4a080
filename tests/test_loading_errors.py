"""Bad input: each file gives one clear line (TargetError / exit 2), never a traceback or a hang."""
from __future__ import annotations

import json
import pickle
import random
import zipfile

import pytest
import torch
import torch.nn as nn

from evalguard.errors import TargetError, UsageError
from evalguard.loading import load_target
from evalguard.subject import AuditOptions


def small_model():
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def _write(data: bytes, name: str):
    def make(tmp):
        (tmp / name).write_bytes(data)
        return tmp / name
    return make


def _truncated_zip(tmp):
    torch.save(small_model(), tmp / "full.pt")
    data = (tmp / "full.pt").read_bytes()
    (tmp / "model.pt").write_bytes(data[: len(data) // 2])
    return tmp / "model.pt"


def _zip_with_truncated_member(tmp):
    # The directory is intact but a tensor record is cut short: found when torch reads it.
    torch.save(small_model(), tmp / "full.pt")
    with zipfile.ZipFile(tmp / "full.pt") as zin, zipfile.ZipFile(tmp / "model.pt", "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            zout.writestr(item, data[:3] if item.filename.endswith("data/0") else data)
    return tmp / "model.pt"


def _foreign_zip(tmp):
    with zipfile.ZipFile(tmp / "model.pt", "w") as archive:
        archive.writestr("readme.txt", "hello")
    return tmp / "model.pt"


def _torch_save(value, name="model.pt"):
    def make(tmp):
        torch.save(value, tmp / name)
        return tmp / name
    return make


def _plain_pickle(value):
    return _write(pickle.dumps(value, protocol=4), "model.pkl")


def _truncated_safetensors(tmp):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(64, 64)}, str(tmp / "m.safetensors"))
    data = (tmp / "m.safetensors").read_bytes()
    (tmp / "model.safetensors").write_bytes(data[:-100])
    return tmp / "model.safetensors"


def _truncated_onnx(tmp):
    torch.onnx.export(small_model(), (torch.randn(2, 4),), str(tmp / "full.onnx"), dynamo=False)
    data = (tmp / "full.onnx").read_bytes()
    (tmp / "model.onnx").write_bytes(data[: len(data) // 3])
    return tmp / "model.onnx"


def _empty_dir(tmp):
    (tmp / "empty").mkdir()
    return tmp / "empty"


def _hf_folder_without_config(tmp):
    folder = tmp / "hf"
    folder.mkdir()
    torch.save(small_model().state_dict(), folder / "pytorch_model.bin")
    return folder


BAD_FILES = {
    "empty file": (_write(b"", "model.pt"), "empty file"),
    "truncated zip": (_truncated_zip, "truncated or corrupt zip"),
    "zip with a truncated tensor record": (_zip_with_truncated_member, "tensor record"),
    "zip that is not a torch archive": (_foreign_zip, "not one written by torch.save"),
    "random bytes": (_write(random.Random(0).randbytes(4096), "model.pt"), "unrecognised file format"),
    "text file named .pt": (_write(b"this is not a checkpoint\nreally\n", "model.pt"), "a text file"),
    "truncated pickle": (_write(pickle.dumps({"a": [1, 2, 3]}, protocol=2)[:-3], "model.pt"), "corrupt pickle"),
    "plain pickle of an int": (_plain_pickle(5), "a plain Python pickle"),
    "plain pickle of a list": (_plain_pickle([1, 2, 3]), "a plain Python pickle"),
    "torch.save of an int": (_torch_save(5), "holds an int"),
    "torch.save of a list": (_torch_save([1, 2]), "holds a list"),
    "torch.save of one tensor": (_torch_save(torch.ones(3)), "single tensor"),
    "torch.save of an optimizer state": (_torch_save(torch.optim.SGD(small_model().parameters(), lr=0.1)
                                                     .state_dict()), "optimizer state_dict"),
    "dict without a model": (_torch_save({"epoch": 3, "lr": 0.1}), "no model or state_dict"),
    "state_dict without --model": (_torch_save(small_model().state_dict()), "pass --model MODULE:CALLABLE"),
    "truncated safetensors": (_truncated_safetensors, "safetensors"),
    "corrupt safetensors header": (_write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}", "m.safetensors"),
                                   "corrupt safetensors header"),
    "truncated onnx": (_truncated_onnx, "not a valid ONNX model"),
    "directory with nothing to audit": (_empty_dir, "no model files"),
    "HF folder without config.json or --model": (_hf_folder_without_config, "without config.json"),
}


@pytest.mark.parametrize("make, expected", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_input_gives_one_clear_line(make, expected, tmp_path):
    path = make(tmp_path)
    with pytest.raises(TargetError) as info:
        load_target(str(path), AuditOptions())
    message = str(info.value)
    assert expected in message
    assert "\n" not in message and len(message) < 600
    assert "Traceback" not in message


FACTORY_ERRORS = {
    "factory file missing": ("missing.py:build", "", "no such file"),
    "factory import fails": ("broken.py:build", "import not_a_real_module_xyz\n", "importing"),
    "factory syntax error": ("broken.py:build", "def build(:\n", "SyntaxError"),
    "factory raises": ("broken.py:build", "def build():\n    raise ValueError('no GPU here')\n", "no GPU here"),
    "factory returns a non-module": ("broken.py:build", "def build():\n    return 42\n", "not a torch.nn.Module"),
    "factory attribute missing": ("broken.py:nope", "def build():\n    pass\n", "no attribute"),
}


@pytest.mark.parametrize("spec, source, expected", FACTORY_ERRORS.values(), ids=FACTORY_ERRORS.keys())
def test_factory_failures_are_target_errors(spec, source, expected, tmp_path):
    torch.save(small_model().state_dict(), tmp_path / "weights.pt")
    if source:
        (tmp_path / "broken.py").write_text(source)
    with pytest.raises(TargetError, match=expected):
        load_target(str(tmp_path / "weights.pt"), AuditOptions(model_factory=f"{tmp_path}/{spec}"))


def test_model_without_inferable_inputs_fails_only_when_inputs_are_needed(tmp_path):
    (tmp_path / "arch.py").write_text(
        "import torch, torch.nn as nn\n"
        "class Scale(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.scale = nn.Parameter(torch.ones(1))\n"
        "def build():\n    return Scale()\n")
    torch.save({"scale": torch.ones(1) * 3}, tmp_path / "w.pt")
    subject = load_target(str(tmp_path / "w.pt"), AuditOptions(model_factory=f"{tmp_path}/arch.py:build"))
    assert float(subject.model.scale.detach()) == 3.0  # loading works; only the inputs are unknown
    with pytest.raises(TargetError, match=r"cannot infer inputs for .*w.pt; pass --input-shape or --example-inputs"):
        _ = subject.inputs


def test_unexpected_internal_errors_are_eg900_naming_the_loader(tmp_path, monkeypatch):
    """An exception from evalguard's own loading code is evalguard's bug (EG900), not the file's."""
    import evalguard.loading.formats as formats
    from evalguard.orchestrator import audit

    def boom(*_args, **_kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(formats, "sniff", boom)
    torch.save(small_model(), tmp_path / "m.pt")
    report = audit([str(tmp_path / "m.pt")], AuditOptions(selected=frozenset({"EG101", "EG900"})))
    [target] = report.targets
    assert target.status == "error" and "(EG900)" in target.detail
    [finding] = report.findings
    assert finding.rule == "EG900" and finding.evidence["check"] == "loader"
    assert "KeyError" in finding.message and "\n" not in finding.message


def test_trusting_the_standard_library_is_a_usage_error(tmp_path):
    torch.save(small_model(), tmp_path / "m.pt")
    with pytest.raises(UsageError, match="cannot be trusted"):
        load_target(str(tmp_path / "m.pt"), AuditOptions(trust_modules=("os",)))


# -- through the command line ------------------------------------------------------------------

def test_cli_bad_file_exits_2_with_one_error_line(run_cli, tmp_path):
    (tmp_path / "model.pt").write_bytes(b"")
    code, _out, err = run_cli("check", tmp_path / "model.pt", "--no-onnx")
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"error: {tmp_path / 'model.pt'}: empty file"]


def test_cli_state_dict_without_model_exits_2(run_cli, tmp_path):
    torch.save(small_model().state_dict(), tmp_path / "weights.pt")
    code, _out, err = run_cli("check", tmp_path / "weights.pt", "--no-onnx")
    assert code == 2 and "pass --model MODULE:CALLABLE" in err and "Traceback" not in err


def test_cli_malicious_checkpoint_reports_eg901_and_runs_nothing(run_cli, tmp_path):
    import os

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    torch.save({"model": Payload()}, tmp_path / "model.pt")
    code, out, err = run_cli("check", tmp_path / "model.pt", "--no-onnx", "--format", "json")
    report = json.loads(out)
    assert code == 2              # refused: the file was not loaded, so it was not audited
    assert [f["rule"] for f in report["findings"]] == ["EG901"]
    assert report["targets"][0]["status"] == "refused"
    assert not (tmp_path / "pwned").exists()


def test_truncated_record_of_a_new_dtype_is_caught(tmp_path):
    # float8 storages are saved untyped (numel counts bytes); the size check covers them too.
    torch.save({"w": torch.ones(16, dtype=torch.float8_e4m3fn)}, tmp_path / "full.pt")
    with zipfile.ZipFile(tmp_path / "full.pt") as zin, zipfile.ZipFile(tmp_path / "model.pt", "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            zout.writestr(item, data[:5] if item.filename.endswith("data/0") else data)
    with pytest.raises(TargetError, match="has 5 bytes, expected 16"):
        load_target(str(tmp_path / "model.pt"), AuditOptions(model_factory="torch.nn:Identity"))
