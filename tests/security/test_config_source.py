"""Issue 25 item 5: the audited folder never configures its own audit.

A ``pyproject.toml`` inside a model folder is never read (the control shows the same file does
change the run when the user names it with ``--config``), and ``trust-module`` counts only from
the command line, ``--config`` or the config of the directory the run starts in.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import payloads as P
import pytest

from evalguard.config import find_pyproject, is_model_folder, load_config

BOGUS = "[tool.evalguard]\nnot-a-key = 1\n"


def trusting(package: str) -> str:
    return f'[tool.evalguard]\ntrust-module = ["{package}"]\n'


@pytest.fixture
def package(tmp_path, monkeypatch) -> str:
    """An importable package with a plain data class (what --trust-module would admit)."""
    name = f"evalguard_cfgpkg_{abs(hash(str(tmp_path))) % 10**8}"
    root = tmp_path / "src" / name
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("class Meta:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "src"), os.environ.get("PYTHONPATH", "")]))
    return name


def needs_class(folder: Path, package: str, name: str = "ckpt.pt") -> Path:
    """A torch.save archive whose data.pkl needs ``package.Meta`` (and nothing else)."""
    body = b"\x80\x02}X\x04\x00\x00\x00metac" + f"{package}\nMeta\n".encode() + b")\x81s."
    pickle.loads(body.replace(f"{package}\nMeta".encode(), b"argparse\nNamespace"))  # well-formed
    folder.mkdir(parents=True, exist_ok=True)
    src = P.clean_torch_save(folder)
    return P.edit_zip(src, folder / name, lambda n, d: [(n, body if n.endswith("data.pkl") else d)])


def report(run_cli, *args):
    code, out, err = run_cli("check", *args, "--no-onnx", "--format", "json")
    return code, json.loads(out) if out.strip().startswith("{") else None, err


@pytest.mark.realmodel  # builds the folder's BERT through transformers
def test_a_model_folders_pyproject_is_never_read(tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    folder = P.safetensors_folder(tmp_path)
    (folder / "pyproject.toml").write_text(BOGUS)
    code, out, err = report(run_cli, folder)
    assert out is not None, err            # the bogus key was not read: the run went ahead
    assert "not read" in err and "model folder" in err
    assert find_pyproject(folder.resolve()) is None


def test_control_the_same_file_named_with_config_is_read(tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    folder = P.safetensors_folder(tmp_path)
    (folder / "pyproject.toml").write_text(BOGUS)
    code, _out, err = run_cli("check", folder, "--no-onnx", "--config", folder / "pyproject.toml")
    assert code == 2 and "not-a-key" in err


def test_a_file_inside_a_model_folder_does_not_read_the_folders_config(tmp_path):
    folder = P.safetensors_folder(tmp_path)
    (folder / "pyproject.toml").write_text(BOGUS)
    (folder / "sub").mkdir()
    (tmp_path / "pyproject.toml").write_text('[tool.evalguard]\nseed = 3\n')
    assert find_pyproject((folder / "sub").resolve()) == (tmp_path / "pyproject.toml").resolve()
    assert load_config(start=folder.resolve()).seed == 3


def test_model_folder_trust_module_admits_nothing(tmp_path, monkeypatch, run_cli, package):
    monkeypatch.chdir(tmp_path)
    folder = P.safetensors_folder(tmp_path)
    needs_class(folder, package, "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    (folder / "pyproject.toml").write_text(trusting(package))
    code, out, _err = report(run_cli, folder)
    assert code == 2 and out["targets"][0]["status"] == "refused"
    assert "EG902" in {f["rule"] for f in out["findings"]}


@pytest.mark.parametrize("where", ["cwd", "elsewhere"])
def test_trust_module_counts_only_from_the_starting_directorys_config(tmp_path, monkeypatch, run_cli, package,
                                                                       where):
    project = tmp_path / "project"
    path = needs_class(project, package)
    (project / "pyproject.toml").write_text(trusting(package))
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(project if where == "cwd" else other)
    _code, out, err = report(run_cli, path)
    rules = {f["rule"] for f in out["findings"]}
    if where == "cwd":   # control: the same config, found from the run's directory, is honoured
        assert "EG902" not in rules, out["findings"]
        assert "no model or state_dict" in out["targets"][0]["detail"]  # it was unpickled: admitted
    else:
        assert "EG902" in rules and "trust-module ignored" in err


def test_command_line_trust_module_still_works(tmp_path, monkeypatch, run_cli, package):
    project = tmp_path / "project"
    path = needs_class(project, package)
    monkeypatch.chdir(tmp_path)
    _code, out, _err = report(run_cli, path, "--trust-module", package)
    assert "EG902" not in {f["rule"] for f in out["findings"]}


@pytest.mark.parametrize(("files", "expected"), [
    ({"model.safetensors": b""}, True),
    ({"pytorch_model.bin.index.json": b"{}"}, True),
    ({"config.json": b'{"model_type": "bert"}'}, True),
    ({"config.json": b'{"auto_map": {}}'}, True),
    ({"config.json": b'{"debug": true}'}, False),     # an application's config
    ({"model.pt": b"", "train.py": b""}, False),      # a project holding a checkpoint
])
def test_what_a_model_folder_is(tmp_path, files, expected):
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert is_model_folder(tmp_path) is expected
