"""`check --shard K/N` + `evalguard merge`: the same findings, coverage and exit code as one run."""
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FACTORY = '''
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.3), nn.BatchNorm1d(8), nn.Linear(8, 2))
'''


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """Two checkpoints for one factory and three source files: five targets, cwd = the folder."""
    import importlib.util

    import torch

    (tmp_path / "factory.py").write_text(FACTORY)
    spec = importlib.util.spec_from_file_location("_eg_merge_factory", tmp_path / "factory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    models = tmp_path / "models"
    models.mkdir()
    torch.save(module.build().state_dict(), models / "a.pt")
    trained = module.build().eval()
    torch.save(trained.state_dict(), models / "b.pt")
    src = tmp_path / "src"
    src.mkdir()
    for rule in ("EG105", "EG301", "EG201"):
        shutil.copy(ROOT / "examples" / "rules" / rule / "bad.py", src / f"{rule.lower()}.py")
    monkeypatch.chdir(tmp_path)
    return ["models/a.pt", "models/b.pt", "src"]


ARGS = ("--model", "factory.py:build", "--input-shape", "4x8", "--no-onnx", "--no-isolate")


def _comparable(report: dict) -> tuple:
    targets = sorted((t["path"], t["kind"], t["status"], json.dumps(t["coverage"], sort_keys=True))
                     for t in report["targets"])
    return targets, report["findings"], report["summary"]


def _shards(run_cli, targets, count, tmp_path):
    paths, codes = [], []
    for k in range(1, count + 1):
        out = tmp_path / f"shard{k}.json"
        code, _, _ = run_cli("check", *targets, *ARGS, "--shard", f"{k}/{count}", "--format", "json", "-o", out)
        codes.append(code)
        paths.append(out)
    return paths, codes


def test_sharded_runs_merge_to_the_single_run(run_cli, registry, tmp_path):
    code_one, out, _ = run_cli("check", *registry, *ARGS, "--format", "json")
    single = json.loads(out)
    assert len(single["targets"]) == 5 and single["findings"]

    paths, codes = _shards(run_cli, registry, 3, tmp_path)
    shard_targets = [{t["path"] for t in json.loads(p.read_text())["targets"]} for p in paths]
    assert all(shard_targets), "five targets over three shards: none is empty"
    assert set().union(*shard_targets) == {t["path"] for t in single["targets"]}
    assert sum(map(len, shard_targets)) == 5, "no target audited twice"

    code, out, _ = run_cli("merge", *paths, "--format", "json")
    merged = json.loads(out)
    assert code == code_one == max(codes)
    assert _comparable(merged) == _comparable(single)
    assert [m["shard"] for m in merged["run"]["merged_from"]] == ["1/3", "2/3", "3/3"]


@pytest.mark.parametrize("fmt", ["text", "sarif", "junit", "html"])
def test_merge_renders_every_format(run_cli, registry, tmp_path, fmt):
    paths, _ = _shards(run_cli, registry, 2, tmp_path)
    code_one, single, _ = run_cli("check", *registry, *ARGS, "--format", fmt)
    _, single_json, _ = run_cli("check", *registry, *ARGS, "--format", "json")
    code, stdout, _ = run_cli("merge", *paths, "--format", fmt, "--output", tmp_path / f"merged.{fmt}")
    assert code == code_one and stdout == ""
    text = (tmp_path / f"merged.{fmt}").read_text()
    if fmt == "text":
        assert text == single       # the text report shows no run metadata: identical
    elif fmt == "sarif":
        def results(doc):
            return sorted((r["ruleId"], json.dumps(r["locations"], sort_keys=True)) for r in doc["runs"][0]["results"])
        assert results(json.loads(text)) == results(json.loads(single))
    else:
        rules = {f["rule"] for f in json.loads(single_json)["findings"]}
        assert rules and all(rule in text for rule in rules)


def test_merge_exit_code_follows_fail_on(run_cli, registry, tmp_path):
    paths, _ = _shards(run_cli, registry[2:], 2, tmp_path)     # sources only: warnings and errors
    code, _, _ = run_cli("merge", *paths)
    assert code == 1
    code, _, _ = run_cli("merge", *paths, "--fail-on", "error", "--format", "json")
    single_code, _, _ = run_cli("check", "src", *ARGS, "--fail-on", "error")
    assert code == single_code


def test_missing_shard_still_writes_the_report_and_exits_2(run_cli, registry, tmp_path):
    paths, _ = _shards(run_cli, registry, 3, tmp_path)
    out = tmp_path / "merged.json"
    code, _, err = run_cli("merge", paths[0], paths[2], "--format", "json", "-o", out)
    assert code == 2
    assert "error: shard 2/3 is missing" in err
    merged = json.loads(out.read_text())
    expected = {t["path"] for p in (paths[0], paths[2]) for t in json.loads(p.read_text())["targets"]}
    assert {t["path"] for t in merged["targets"]} == expected


def test_merge_refuses_reports_that_do_not_belong_together(run_cli, registry, tmp_path):
    paths, _ = _shards(run_cli, registry, 2, tmp_path)
    code, _, err = run_cli("merge", paths[0], paths[0])
    assert code == 2 and "given twice" in err
    other = tmp_path / "other.json"
    run_cli("check", *registry, *ARGS, "--shard", "2/2", "--select", "EG1", "--format", "json", "-o", other)
    code, _, err = run_cli("merge", paths[0], other)
    assert code == 2 and "different rule selections" in err
    whole = tmp_path / "whole.json"
    run_cli("check", "src", *ARGS, "--format", "json", "-o", whole)
    code, _, err = run_cli("merge", whole, whole)
    assert code == 2 and "is in both" in err


@pytest.mark.parametrize("content, needle", [
    ("not json", "not a JSON report"),
    ('{"schema_version": 1}', "schema_version 2"),
])
def test_merge_bad_input_is_one_line(run_cli, tmp_path, content, needle):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, _, err = run_cli("merge", bad)
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith("error: ") and needle in line


def test_merge_missing_file(run_cli, tmp_path):
    code, _, err = run_cli("merge", tmp_path / "nope.json")
    assert code == 2 and err.startswith("error: cannot read report")


def test_merge_does_not_import_torch(run_cli, registry, tmp_path):
    """The CI merge job installs evalguard without torch."""
    import subprocess
    import sys

    paths, _ = _shards(run_cli, registry[2:], 2, tmp_path)
    code = ("import sys\nfrom evalguard.cli import main\n"
            f"try:\n    main(['merge', *{[str(p) for p in paths]!r}, '--format', 'html', '-o', 'm.html'])\n"
            "except SystemExit as e:\n    assert e.code in (0, 1), e.code\n"
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'numpy') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "<html" in (tmp_path / "m.html").read_text()


def test_sharded_ci_example_uses_real_flags_and_every_shard():
    import shlex

    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the CI example")
    from evalguard.cli import check, merge

    workflow = yaml.safe_load((ROOT / "examples/ci/github-actions-shards.yml").read_text())
    shards = int(workflow["env"]["SHARDS"])
    audit, report = workflow["jobs"]["audit"], workflow["jobs"]["report"]
    assert audit["strategy"]["matrix"]["shard"] == list(range(1, shards + 1))
    assert report["needs"] == "audit" and report["if"] == "always()"

    def flags(job, command):
        runs = " ".join(s["run"] for s in job["steps"] if command in s.get("run", ""))
        runs = runs.replace("$REGISTRY_ARGS", workflow["env"]["REGISTRY_ARGS"])
        return {t.split("=")[0] for t in shlex.split(runs) if t.startswith("--")}

    options = {cmd: {o for p in cmd.params for o in getattr(p, "opts", ())} for cmd in (check, merge)}
    assert "--shard" in flags(audit, "evalguard check")
    assert flags(audit, "evalguard check") <= options[check]
    assert flags(report, "evalguard merge") <= options[merge]


def test_merge_quiet_prints_the_findings_as_check_quiet_does(run_cli, registry, tmp_path):
    paths, _ = _shards(run_cli, registry, 2, tmp_path)
    code_one, single, _ = run_cli("check", *registry, *ARGS, "-q")
    code, merged, err = run_cli("merge", *paths, "-q")
    assert code == code_one and merged == single and single.strip()
    _, loud, _ = run_cli("merge", *paths)
    assert loud != merged and loud.startswith(merged)      # -q drops the summary after the findings
    code, _, err = run_cli("merge", paths[0], "-q")         # error lines are not notes: still printed
    assert code == 2 and "error: shard 2/2 is missing" in err


def test_merge_keeps_each_targets_time(run_cli, registry, tmp_path):
    paths, _ = _shards(run_cli, registry, 2, tmp_path)
    code, out, _ = run_cli("merge", *paths, "--format", "json")
    merged = {t["path"]: t for t in json.loads(out)["targets"]}
    shards = {t["path"]: t for p in paths for t in json.loads(p.read_text())["targets"]}
    assert merged["models/a.pt"]["usage"] == shards["models/a.pt"]["usage"]
    assert merged["models/a.pt"]["usage"]["seconds"] > 0
    assert "usage" not in merged["src/eg105.py"]              # sources: no per-file timing
