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
    ('seed = "seven"\n', "seed must be an integer, got 'seven'"),
    ('select = "EG1"\n', "select must be a list"),
    ('[tool.evalguard.severity]\nEG301 = "fatal"\n', 'EG301 must be "info", "warning" or "error", got \'fatal\''),
    ('fail-on = "warnin"\n', 'fail-on must be "info", "warning" or "error", got \'warnin\''),
    ('device = "tpu"\n', 'device must be "cpu" or "cuda"'),
    ('extend-select = [1]\n', "extend-select must be a list of strings"),
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


def test_config_ignore_and_cli_selection_follow_ruff(tmp_path, monkeypatch, run_cli):
    """--ignore adds to the config's ignore; --select replaces the selection; --extend-select adds."""
    write(tmp_path, 'ignore = ["EG9"]\n')
    (tmp_path / "serve.py").write_text(BAD_LOAD)
    monkeypatch.chdir(tmp_path)
    assert run_cli("check", "serve.py")[0] == 0
    assert run_cli("check", "serve.py", "--ignore", "EG1")[0] == 0      # EG9 still ignored
    assert run_cli("check", "serve.py", "--extend-ignore", "EG1")[0] == 0
    assert run_cli("check", "serve.py", "--select", "EG903")[0] == 1    # replaces: EG903 back on
    assert run_cli("check", "serve.py", "--extend-select", "EG903")[0] == 1


def test_extend_select_adds_to_a_config_select(tmp_path, monkeypatch, run_cli):
    write(tmp_path, 'select = ["EG105"]\n')
    (tmp_path / "serve.py").write_text(BAD_LOAD)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli("check", "serve.py", "--format", "json")
    assert code == 0 and json.loads(out)["run"]["selected"] == ["EG105"]
    code, out, _ = run_cli("check", "serve.py", "--format", "json", "--extend-select", "unsafe-torch-load")
    assert code == 1 and json.loads(out)["run"]["selected"] == ["EG105", "EG903"]


def test_each_target_uses_its_nearest_pyproject(tmp_path, monkeypatch, run_cli):
    """Config is found walking up from each target, not from the current folder (as ruff)."""
    strict, lax = tmp_path / "strict", tmp_path / "lax" / "src"
    lax.mkdir(parents=True)
    strict.mkdir()
    (strict / "pyproject.toml").write_text('[tool.evalguard]\nfail-on = "info"\n'
                                           '[tool.evalguard.severity]\nunsafe-torch-load = "info"\n')
    (tmp_path / "lax" / "pyproject.toml").write_text('[tool.evalguard]\nignore = ["EG903"]\n')
    (lax / "pyproject.toml").write_text("[project]\nname = 'sub'\n")    # no [tool.evalguard]: passed over
    for folder in (strict, lax):
        (folder / "serve.py").write_text(BAD_LOAD)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, _ = run_cli("check", strict / "serve.py", lax / "serve.py", "--format", "json")
    report = json.loads(out)
    [finding] = report["findings"]
    assert finding["location"]["path"] == str(strict / "serve.py") and finding["severity"] == "info"
    assert code == 1                                           # fail-on info in strict/
    assert [t["path"] for t in report["targets"]] == [str(strict / "serve.py"), str(lax / "serve.py")]
    assert report["run"]["configs"] == [str(strict / "pyproject.toml"), str(tmp_path / "lax" / "pyproject.toml")]
    assert run_cli("check", lax / "serve.py")[0] == 0          # lax/ ignores EG903
    # --config wins over every pyproject.toml
    other = tmp_path / "other.toml"
    other.write_text('select = ["EG903"]\n')
    code, out, _ = run_cli("check", strict / "serve.py", lax / "serve.py", "--config", other, "--format", "json")
    assert code == 1 and len(json.loads(out)["findings"]) == 2
    assert {f["severity"] for f in json.loads(out)["findings"]} == {"error"}


def test_a_bad_config_value_is_one_error_line_naming_key_and_values(tmp_path, monkeypatch, run_cli):
    write(tmp_path, 'fail-on = "warnin"\n')
    (tmp_path / "serve.py").write_text(BAD_LOAD)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("check", "serve.py")
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("error: ") and "fail-on" in line and '"warning"' in line and "internal" not in line


def test_unknown_rule_in_config_select_names_the_file(tmp_path, monkeypatch, run_cli):
    write(tmp_path, 'select = ["EG9999"]\n')
    (tmp_path / "serve.py").write_text(BAD_LOAD)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("check", "serve.py")
    [line] = err.strip().splitlines()
    assert code == 2 and "pyproject.toml" in line and "EG9999" in line


def test_rule_names_in_config(tmp_path, monkeypatch, run_cli):
    write(tmp_path, 'select = ["unsafe-torch-load"]\n[tool.evalguard.severity]\nunsafe-torch-load = "warning"\n')
    (tmp_path / "serve.py").write_text(BAD_LOAD)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli("check", "serve.py", "--format", "json")
    [finding] = json.loads(out)["findings"]
    assert code == 0 and finding["rule"] == "EG903" and finding["severity"] == "warning"


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


def test_bad_input_shape_in_config_names_the_config_key(tmp_path, monkeypatch, run_cli):
    write(tmp_path, 'input-shape = ["2xx3"]\n')
    (tmp_path / "serve.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("check", "serve.py")
    [line] = err.strip().splitlines()
    assert code == 2 and "pyproject.toml: [tool.evalguard] input-shape" in line and "'2xx3'" in line
