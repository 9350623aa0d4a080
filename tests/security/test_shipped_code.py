"""Issue 25 item 4 (remote code): a folder that ships code (model, config, tokenizer or processor
classes named by an ``auto_map``, or any ``.py`` file) is not audited as if the stock transformers
class were the model deployed.

Without ``--model`` the folder is refused (EG905) naming the shipped code and the route that
works; with ``--model`` (the user's own trusted factory) it is audited and the report says the
folder's code was not run. The positive control shows transformers really runs the shipped file
when asked to (``trust_remote_code=True``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import payloads as P
import pytest

from evalguard.errors import RefusedTarget
from evalguard.loading import load_target
from evalguard.subject import AuditOptions

MODELING = """\
from pathlib import Path
Path({marker!r}).touch()
from transformers import BertModel


class TinyModel(BertModel):
    pass
"""
FACTORY = """\
import torch


class Weights(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))

    def forward(self, x):
        return x * self.w


def build():
    return Weights()
"""


def remote_code_folder(tmp_path: Path, marker: Path, auto_map: bool = True) -> Path:
    folder = P.safetensors_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    if auto_map:
        config["auto_map"] = {"AutoModel": "modeling_tiny.TinyModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_tiny.py").write_text(MODELING.format(marker=str(marker)))
    return folder


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "marker"
    yield path
    assert not path.exists(), "the shipped code ran"


@pytest.mark.parametrize("auto_map", [True, False], ids=["auto_map", "modeling_file_only"])
def test_folder_with_shipped_model_code_is_refused_with_the_route(tmp_path, marker, auto_map):
    folder = remote_code_folder(tmp_path, marker, auto_map)
    with pytest.raises(RefusedTarget) as info:
        load_target(str(folder), AuditOptions())
    message = info.value.findings[0].message
    assert [f.rule for f in info.value.findings] == ["EG905"]
    assert "modeling_tiny" in message and "--model" in message


def test_with_the_users_own_factory_the_folder_is_audited_and_says_so(tmp_path, marker):
    folder = remote_code_folder(tmp_path, marker)
    (tmp_path / "factory.py").write_text(FACTORY)
    subject = load_target(str(folder), AuditOptions(model_factory=f"{tmp_path / 'factory.py'}:build"))
    assert subject.kind == "hf-folder"
    shown = json.dumps(subject.load.details, default=str)
    assert "modeling_tiny" in shown and "not run" in shown


def test_cli_reports_the_remote_code_folder_as_not_audited(tmp_path, marker, run_cli):
    folder = remote_code_folder(tmp_path, marker)
    code, out, _err = run_cli("check", folder, "--no-onnx", "--format", "json")
    report = json.loads(out)
    assert code == 2 and report["targets"][0]["status"] == "refused"


@pytest.mark.realmodel  # builds the folder's BERT through transformers
def test_control_transformers_runs_the_shipped_code_when_trusted(tmp_path):
    ran = tmp_path / "ran"
    folder = remote_code_folder(tmp_path, ran)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "hf_modules")}
    result = subprocess.run([sys.executable, "-c", "import sys, transformers\n"
                             "transformers.AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)",
                             str(folder)], capture_output=True, text=True, timeout=300, check=False, env=env)
    assert ran.exists(), result.stderr[-800:]


CONFIG_CODE = """\
from pathlib import Path
Path({marker!r}).touch()
from transformers import BertConfig


class TinyConfig(BertConfig):
    pass
"""


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_any_shipped_code_blocks_the_audit_not_only_model_classes(tmp_path, where):
    """Red team a04/a05: an ``auto_map`` naming a config or tokenizer class runs its shipped file
    on ``from_pretrained(trust_remote_code=True)`` just as a model class does, so every ``auto_map``
    of any top-level JSON config, and every shipped ``.py`` file, refuses the folder."""
    folder = P.safetensors_folder(tmp_path)
    entry = {"AutoConfig": "configuration_tiny.TinyConfig"} if where == "config.json" else \
        {"AutoTokenizer": ["tokenization_tiny.TinyTokenizer", None]}
    data = json.loads((folder / where).read_text()) if (folder / where).is_file() else {}
    data["auto_map"] = entry
    (folder / where).write_text(json.dumps(data))
    code = "configuration_tiny.py" if where == "config.json" else "tokenization_tiny.py"
    (folder / code).write_text("raise SystemExit('never imported')\n")
    with pytest.raises(RefusedTarget) as info:
        load_target(str(folder), AuditOptions())
    assert [f.rule for f in info.value.findings] == ["EG905"]
    assert code in str(info.value) or where in str(info.value)


def test_control_transformers_runs_a_shipped_configuration_file(tmp_path):
    """The positive control for the case above: AutoConfig with trust_remote_code imports it."""
    marker = tmp_path / "config-code-ran"
    folder = P.safetensors_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_tiny.TinyConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_tiny.py").write_text(CONFIG_CODE.format(marker=str(marker)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", "import sys, transformers; "
                             "transformers.AutoConfig.from_pretrained(sys.argv[1], trust_remote_code=True)",
                             str(folder)], capture_output=True, text=True, timeout=300, check=False, env=env)
    assert marker.exists(), result.stderr[-800:]
