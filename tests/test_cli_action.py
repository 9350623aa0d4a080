"""The GitHub Action (action.yml) and its example workflow, and the SARIF they upload
(issue 30 item 12): checked offline against the rules GitHub applies."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML reads action.yml")

ROOT = Path(__file__).resolve().parent.parent


def _check_options() -> set[str]:
    from evalguard.cli import check

    return {opt for param in check.params for opt in getattr(param, "opts", ())}


def _action() -> dict:
    return yaml.safe_load((ROOT / "action.yml").read_text())


def _flags(text: str) -> set[str]:
    return {token.split("=")[0] for token in shlex.split(text) if token.startswith("--")}


def test_action_is_a_composite_action_with_documented_inputs_and_outputs():
    action = _action()
    assert action["name"] and action["description"] and action["runs"]["using"] == "composite"
    inputs = action["inputs"]
    assert {"args", "fail-on", "torch-version", "sarif-file", "upload-sarif", "category"} <= set(inputs)
    for name, spec in inputs.items():
        assert spec["description"], name
        assert spec.get("required") is not True or "default" not in spec, name
    steps = action["runs"]["steps"]
    ids = {step["id"] for step in steps if "id" in step}
    for name, spec in action["outputs"].items():
        assert spec["description"], name
        [step_id] = re.findall(r"\$\{\{\s*steps\.([\w-]+)\.outputs\.[\w-]+\s*\}\}", spec["value"])
        assert step_id in ids
    for step in steps:
        if "run" in step:
            assert step["shell"] == "bash"           # composite run steps must name their shell
            assert "${{" not in step["run"]          # inputs arrive through env: no script injection


def test_action_installs_cpu_torch_runs_the_gate_and_uploads_sarif():
    steps = _action()["runs"]["steps"]
    install = next(s for s in steps if s.get("name") == "Install evalguard")["run"]
    assert "--index-url https://download.pytorch.org/whl/cpu" in install
    assert 'torch==$TORCH_VERSION' in install
    check = next(s for s in steps if s.get("id") == "check")
    assert "evalguard check $EVALGUARD_ARGS" in check["run"]
    assert _flags(check["run"].split("evalguard check", 1)[1].splitlines()[0].replace("$EVALGUARD_ARGS", "")) \
        <= _check_options()
    assert '--report "sarif:$SARIF_FILE"' in check["run"] and "--format github" in check["run"]
    upload = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@"))
    assert upload["with"]["sarif_file"] == "${{ steps.check.outputs.sarif-file }}"
    assert upload["with"]["category"] == "${{ inputs.category }}"
    assert "always()" in upload["if"] and "inputs.upload-sarif == 'true'" in upload["if"]
    last = steps[-1]
    assert last["if"] == "steps.check.outputs.exit-code != '0'" and 'exit "$EXIT_CODE"' in last["run"]


def test_example_workflow_uses_the_action_with_its_real_inputs():
    workflow = yaml.safe_load((ROOT / "examples/ci/github-action.yml").read_text())
    assert workflow["permissions"]["security-events"] == "write"
    inputs = _action()["inputs"]
    used = [step for job in workflow["jobs"].values() for step in job["steps"]
            if re.fullmatch(r"[\w-]+/evalguard@v[\d.]+", step.get("uses", ""))]
    assert len(used) == 2
    for step in used:
        assert set(step["with"]) <= set(inputs)
        assert _flags(step["with"]["args"]) <= _check_options()
    assert any(step["with"].get("torch-version") == "none" for step in used)   # sources need no torch


def _github_sarif_problems(sarif: dict) -> list[str]:
    """What GitHub code scanning rejects or drops (docs: 'SARIF support for code scanning')."""
    problems = []
    if sarif.get("version") != "2.1.0":
        problems.append("version")
    for run in sarif["runs"]:
        rules = {rule["id"] for rule in run["tool"]["driver"].get("rules", [])}
        if not run["tool"]["driver"].get("name"):
            problems.append("tool.driver.name")
        for i, result in enumerate(run["results"]):
            if result.get("ruleId") not in rules:
                problems.append(f"result {i}: ruleId not among the rules")
            if not result.get("message", {}).get("text"):
                problems.append(f"result {i}: message.text")
            if not result.get("partialFingerprints"):
                problems.append(f"result {i}: partialFingerprints")
            locations = result.get("locations") or []
            if not locations:
                problems.append(f"result {i}: no location")
            for location in locations:
                physical = location.get("physicalLocation", {})
                if not physical.get("artifactLocation", {}).get("uri"):
                    problems.append(f"result {i}: artifactLocation.uri")
                line = physical.get("region", {}).get("startLine")
                if not isinstance(line, int) or line < 1:
                    problems.append(f"result {i}: region.startLine")
    return problems


def test_sharded_run_sarif_passes_githubs_rules(run_cli, tmp_path, monkeypatch):
    """Two shards (a model file and source files), merged: every result has a region."""
    import torch
    from torch import nn

    monkeypatch.chdir(tmp_path)
    (tmp_path / "serve.py").write_text("import torch\nmodel = torch.load('m.pt', weights_only=False)\n")
    (tmp_path / "train.py").write_text("import torch\n\ndef opt(m):\n"
                                       "    return torch.optim.Adam(m.parameters(), weight_decay=0.01)\n")
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout2d(0.3), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
    torch.jit.save(torch.jit.script(model), "model.pt")
    shards = []
    for k in (1, 2):
        path = tmp_path / f"shard{k}.json"
        code, _, err = run_cli("check", "model.pt", "serve.py", "train.py", "--input-shape", "2x3x16x16",
                               "--no-onnx", "--no-isolate", "--shard", f"{k}/2", "--format", "json",
                               "--output", path)
        assert code in (0, 1), err
        shards.append(path)
    code, out, err = run_cli("merge", *shards, "--format", "sarif")
    sarif = json.loads(out)
    results = sarif["runs"][0]["results"]
    assert {r["ruleId"] for r in results} >= {"EG101", "EG903", "EG301"}, err
    model_results = [r for r in results if r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                     == "model.pt"]
    assert model_results and all(r["locations"][0]["physicalLocation"]["region"] == {"startLine": 1}
                                 for r in model_results)
    assert _github_sarif_problems(sarif) == []
    (tmp_path / "merged.sarif").write_text(out)


def test_sharded_run_sarif_validates_against_the_sarif_2_1_0_model(run_cli, tmp_path, monkeypatch):
    """The SARIF 2.1.0 object model from PyPI (sarif-pydantic, in the test extra) accepts the merged
    report of a sharded run; the shared development venv may not have it yet."""
    sarif_model = pytest.importorskip("sarif_pydantic.sarif", reason="pip install sarif-pydantic (test extra)")
    test_sharded_run_sarif_passes_githubs_rules(run_cli, tmp_path, monkeypatch)
    log = sarif_model.Sarif.model_validate(json.loads((tmp_path / "merged.sarif").read_text()))
    assert log.version == "2.1.0" and all(r.locations[0].physical_location.region.start_line >= 1
                                          for r in log.runs[0].results)
