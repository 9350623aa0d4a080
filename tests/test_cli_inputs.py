"""Standard inputs and outputs ruff users expect (issue 30 item 14): GitLab Code Quality,
source from stdin, a standalone evalguard.toml, --add-noqa."""
from __future__ import annotations

import json

import pytest

BAD_SOURCE = "import torch\nmodel = torch.load('m.pt', weights_only=False)\n"
ADAM = "import torch\n\ndef opt(m):\n    return torch.optim.Adam(m.parameters(), weight_decay=0.01)\n"


def test_gitlab_code_quality_report(run_cli, tmp_path, monkeypatch):
    import torch
    from torch import nn

    monkeypatch.chdir(tmp_path)
    (tmp_path / "serve.py").write_text(BAD_SOURCE)
    (tmp_path / "train.py").write_text(ADAM)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout2d(0.3), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
    torch.jit.save(torch.jit.script(model), "model.pt")
    code, out, err = run_cli("check", "model.pt", "serve.py", "train.py", "--input-shape", "2x3x16x16",
                             "--no-onnx", "--no-isolate", "--output-format", "gitlab")
    issues = json.loads(out)
    assert code == 1, err
    assert {i["check_name"] for i in issues} >= {"EG101", "EG903", "EG301"}
    assert len({i["fingerprint"] for i in issues}) == len(issues)
    for entry in issues:
        assert entry["type"] == "issue" and entry["description"].startswith(entry["check_name"] + " ")
        assert entry["severity"] in {"info", "minor", "major", "critical", "blocker"}
        assert entry["location"]["path"] in {"model.pt", "serve.py", "train.py"}
        assert isinstance(entry["location"]["lines"]["begin"], int) and entry["location"]["lines"]["begin"] >= 1
    eg903 = next(i for i in issues if i["check_name"] == "EG903")
    assert eg903["location"] == {"path": "serve.py", "lines": {"begin": 2}} and eg903["severity"] == "critical"
    eg101 = next(i for i in issues if i["check_name"] == "EG101")
    assert eg101["location"]["lines"]["begin"] == 1


def test_standalone_evalguard_toml_is_found_like_ruff_toml(run_cli, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.evalguard]\nselect = ["EG903"]\n')
    (tmp_path / "serve.py").write_text(BAD_SOURCE + ADAM)
    (tmp_path / "evalguard.toml").write_text('select = ["EG301"]\n')
    code, out, _ = run_cli("check", tmp_path / "serve.py", "--format", "json")
    report = json.loads(out)
    assert [f["rule"] for f in report["findings"]] == ["EG301"]          # evalguard.toml wins over pyproject
    assert report["run"]["configs"] == [str(tmp_path / "evalguard.toml")]
    (tmp_path / ".evalguard.toml").write_text('select = ["EG903"]\nfail-on = "error"\n')
    code, out, _ = run_cli("check", tmp_path / "serve.py", "--format", "json")
    assert [f["rule"] for f in json.loads(out)["findings"]] == ["EG903"]  # .evalguard.toml first, as .ruff.toml
    (tmp_path / ".evalguard.toml").write_text('selcet = ["EG903"]\n')
    code, _, err = run_cli("check", tmp_path / "serve.py")
    assert code == 2 and "unknown key 'selcet'" in err and ".evalguard.toml" in err


def test_add_noqa_marks_each_finding_line_and_the_next_run_is_clean(run_cli, tmp_path):
    source = tmp_path / "train.py"
    source.write_text(
        "import torch\n"
        "import torch.nn.functional as F\n"
        "model = torch.load('m.pt', weights_only=False)  # evalguard: ignore[EG105]\n"
        "def opt(m):\n"
        "    return torch.optim.Adam(m.parameters(), weight_decay=0.01)\n"
        "DOC = '''torch.load('x', weights_only=False)'''\n")
    before_code, _, _ = run_cli("check", source)
    assert before_code == 1
    code, out, err = run_cli("check", source, "--add-noqa")
    assert code == 0 and out == ""
    assert "added 2 suppressions in 1 file" in err
    lines = source.read_text().splitlines()
    assert lines[2] == "model = torch.load('m.pt', weights_only=False)  # evalguard: ignore[EG105, EG903]"
    assert lines[4] == "    return torch.optim.Adam(m.parameters(), weight_decay=0.01)  # evalguard: ignore[EG301]"
    code, out, _ = run_cli("check", source)
    assert code == 0, out
    code, _, err = run_cli("check", source, "--add-noqa")
    assert "added 0 suppressions in 0 files" in err


def test_add_noqa_leaves_lines_a_comment_cannot_end():
    from evalguard.findings import Finding, Location, Severity
    from evalguard.noqa import add_noqa

    text = "x = f(1, \\\n      2)\nS = '''\ninside\n'''\n"
    findings = [Finding(rule, "m", Location("a.py", line, 1), {}, Severity.ERROR, "n")
                for rule, line in (("EG903", 1), ("EG301", 4))]
    edit = add_noqa("a.py", text, findings)
    assert edit.after == text and edit.added == 0 and edit.skipped == [1, 4]


def _stdin_run(argv, text, cwd):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "evalguard", *argv], input=text, capture_output=True,
                          text=True, cwd=cwd)


def test_stdin_source_is_checked_as_the_named_file_with_its_config(tmp_path):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.evalguard]\nignore = ["EG301"]\n')
    on_disk = project / "src" / "train.py"
    on_disk.write_text("print('the saved version, not what the editor holds')\n")
    proc = _stdin_run(["check", "-", "--stdin-filename", "src/train.py"], BAD_SOURCE + ADAM, project)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("src/train.py:2:9 EG903 error")
    assert "2 | model = torch.load('m.pt', weights_only=False)" in proc.stdout     # stdin's text, not the disk's
    assert "EG301" not in proc.stdout                                            # the file's config applies
    assert "evalguard-stdin-" not in proc.stdout + proc.stderr
    assert on_disk.read_text().startswith("print(")                              # the user's file is untouched
    proc = _stdin_run(["check", "-", "--stdin-filename", "src/train.py", "--format", "json"], "x = 1\n", project)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and [t["path"] for t in report["targets"]] == ["src/train.py"]


def test_stdin_usage_errors(tmp_path):
    for argv, needle in ((["check", "-", "--stdin-filename", "model.pt"], "only Python sources"),
                         (["check", "-", "a.py", "--stdin-filename", "x.py"], "single TARGET '-'"),
                         (["check", "-", "--fix"], "--fix cannot be used with stdin")):
        proc = _stdin_run(argv, "x = 1\n", tmp_path)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr


def _hf_cache(root, repo: str, commit: str = "0123456789abcdef0123456789abcdef01234567"):
    """A Hugging Face hub cache laid out as huggingface_hub writes it; returns the snapshot folder."""
    folder = root / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    return snapshot


def _hf_env(root) -> dict:
    import os

    return {**os.environ, "HF_HUB_CACHE": str(root / "hub"), "HF_HUB_OFFLINE": "1"}


def test_hf_id_not_in_the_cache_is_a_usage_error_saying_how_to_fetch_it(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "evalguard", "check", "hf:someorg/never-downloaded@v2"],
                          capture_output=True, text=True, cwd=tmp_path, env=_hf_env(tmp_path))
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: hf:someorg/never-downloaded@v2: not in the local Hugging Face cache")
    assert "huggingface-cli download someorg/never-downloaded --revision v2" in line
    proc = subprocess.run([sys.executable, "-m", "evalguard", "check", "hf:not a repo"],
                          capture_output=True, text=True, cwd=tmp_path, env=_hf_env(tmp_path))
    assert proc.returncode == 2 and "expected hf:ORG/NAME" in proc.stderr


@pytest.mark.realmodel
def test_hf_id_audits_the_cached_snapshot_as_a_folder(tmp_path):
    import subprocess
    import sys

    from transformers import BertConfig, BertModel

    snapshot = _hf_cache(tmp_path, "someorg/tiny-bert")
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    BertModel(config).eval().save_pretrained(snapshot)
    proc = subprocess.run([sys.executable, "-m", "evalguard", "check", "hf:someorg/tiny-bert", "--select",
                           "EG101,EG208", "--no-onnx", "--format", "json"],
                          capture_output=True, text=True, cwd=tmp_path, env=_hf_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    [target] = json.loads(proc.stdout)["targets"]
    assert (target["path"], target["kind"], target["status"]) == ("hf:someorg/tiny-bert", "hf-folder", "audited")
