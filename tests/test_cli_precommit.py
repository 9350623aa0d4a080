"""pre-commit hooks that install fast (issue 30 item 13): the source hook needs no torch, the
models hook gets torch's CPU build and audits a Hugging Face folder's weights as the folder."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML reads the hook manifest")

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "numpy", "onnx", "onnxruntime", "onnxscript")

#: Runs evalguard in a fresh interpreter where the models extra is not installed.
WITHOUT_TORCH = """
import importlib.abc, sys
HEAVY = {heavy!r}
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None
sys.meta_path.insert(0, NotInstalled())
import importlib.util
importlib.util.find_spec = (lambda find: lambda name, *a: None if name.split(".")[0] in HEAVY
                            else find(name, *a))(importlib.util.find_spec)
from evalguard.cli import main
main({argv!r})
"""


def _run_without_torch(argv, cwd):
    code = WITHOUT_TORCH.format(heavy=HEAVY, argv=[str(a) for a in argv])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)


def _hooks() -> dict:
    return {hook["id"]: hook for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}


def test_core_install_has_no_torch_and_the_models_extra_does():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert not any(name in core for name in HEAVY)
    models = " ".join(project["optional-dependencies"]["models"])
    assert all(name in models for name in HEAVY)


def test_source_hook_installs_the_core_only_and_models_hook_the_cpu_torch():
    hooks = _hooks()
    source, models = hooks["evalguard"], hooks["evalguard-models"]
    assert source["language"] == "python" and source["types"] == ["python"]
    assert not source.get("additional_dependencies")           # `pip install .`: click and jinja2
    extra = models["additional_dependencies"]
    assert "--extra-index-url=https://download.pytorch.org/whl/cpu" in extra
    assert {dep.split(">")[0] for dep in extra if not dep.startswith("--")} == set(HEAVY)


def test_source_rules_run_without_torch_installed(tmp_path):
    (tmp_path / "serve.py").write_text("import torch\nmodel = torch.load('m.pt', weights_only=False)\n")
    proc = _run_without_torch(["check", "serve.py", "--format", "json"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert [f["rule"] for f in json.loads(proc.stdout)["findings"]] == ["EG903"]


def test_model_target_without_torch_says_what_to_install(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"PK\x05\x06" + bytes(18))
    proc = _run_without_torch(["check", "model.pt"], tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: model.pt: auditing models needs torch") and "evalguard[models]" in line


@pytest.mark.realmodel
def test_models_hook_audits_a_hugging_face_weights_file_as_its_folder(run_cli, tmp_path, monkeypatch):
    """pre-commit passes `bert/model.safetensors`; its folder (config.json) is the model."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    BertModel(config).eval().save_pretrained(tmp_path / "bert")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("check", "bert/model.safetensors", "--select", "EG101,EG208", "--no-onnx",
                             "--format", "json")
    [target] = json.loads(out)["targets"]
    assert (target["path"], target["kind"], target["status"]) == ("bert", "hf-folder", "audited"), err
    assert code == 0
