"""[tool.evalguard]: discovery, validation, and flags winning over the file."""
import json

import pytest

from evalguard.config import load_config
from evalguard.errors import UsageError

BAD_LOAD = "import torch\nmodel = torch.load('m.pt', weights_only=False)\n"


def write(tmp_path, body):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n\n[tool.evalguard]\n" + body)


def test_nearest_pyproject_is_found_from_a_subfolder(tmp_path):
    write(tmp_path, 'ignore = ["EG903"]\nseed = 7\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    config = load_config(start=sub)
    assert config.ignore == ["EG903"] and config.seed == 7 and config.path == tmp_path / "pyproject.toml"


def test_no_section_means_defaults(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    config = load_config(start=tmp_path)
    assert config.select is None and config.severity == {}


@pytest.mark.parametrize("body,needle", [
    ('ignroe = ["EG903"]\n', "unknown key 'ignroe'"),
    ('seed = "seven"\n', "seed must be a int"),
    ('select = "EG1"\n', "select must be a list"),
    ('[tool.evalguard.severity]\nEG301 = "fatal"\n', "unknown severity"),
    ('[tool.evalguard.tolerances]\natool = 1\n', "unknown key 'atool'"),
    ('select = [\n', "malformed TOML"),
])
def test_malformed_config_is_a_usage_error_naming_the_key(tmp_path, body, needle):
    write(tmp_path, body)
    with pytest.raises(UsageError, match=needle):
        load_config(start=tmp_path)


def test_config_applies_and_flags_win(tmp_path, monkeypatch, run_cli):
    write(tmp_path, 'fail-on = "warning"\n[tool.evalguard.severity]\nEG903 = "warning"\n')
    (tmp_path / "serve.py").write_text(BAD_LOAD)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli("check", "serve.py", "--format", "json", "--select", "EG903")
    [finding] = json.loads(out)["findings"]
    assert finding["severity"] == "warning" and code == 1  # fail-on warning from the file
    code, _, _ = run_cli("check", "serve.py", "--select", "EG903", "--fail-on", "error")
    assert code == 0  # the flag wins


def test_config_ignore_and_cli_select(tmp_path, monkeypatch, run_cli):
    write(tmp_path, 'ignore = ["EG9"]\n')
    (tmp_path / "serve.py").write_text(BAD_LOAD)
    monkeypatch.chdir(tmp_path)
    assert run_cli("check", "serve.py")[0] == 0
    assert run_cli("check", "serve.py", "--ignore", "EG1")[0] == 1


def test_malformed_config_via_cli_is_exit_2(tmp_path, monkeypatch, run_cli):
    write(tmp_path, 'colour = true\n')
    (tmp_path / "serve.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("check", "serve.py")
    assert code == 2 and err.startswith("error: ") and "unknown key 'colour'" in err


def test_severity_for_unknown_rule(tmp_path, monkeypatch, run_cli):
    write(tmp_path, '[tool.evalguard.severity]\nEG999 = "info"\n')
    (tmp_path / "serve.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("check", "serve.py")
    assert code == 2 and "EG999" in err
