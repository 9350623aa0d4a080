"""The CI examples stay in step with the CLI: hook definitions parse, workflow flags exist."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the CI examples")

ROOT = Path(__file__).resolve().parent.parent


def _check_options() -> set[str]:
    from evalguard.cli import check

    return {opt for param in check.params for opt in getattr(param, "opts", ())}


def test_pre_commit_hooks_are_well_formed():
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert [h["id"] for h in hooks] == ["evalguard", "evalguard-models"]
    for hook in hooks:
        assert {"id", "name", "entry", "language"} <= set(hook)
        assert hook["entry"] == "evalguard check"
        assert "types" in hook or re.compile(hook["files"]).search("model.pt")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'evalguard = "evalguard.cli:main"' in pyproject     # the hook's entry exists


def test_pre_commit_example_uses_the_published_hooks_and_real_flags():
    config = yaml.safe_load((ROOT / "examples/ci/pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    published = {h["id"] for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) <= published
    flags = {arg for h in hooks.values() for arg in h.get("args", []) if arg.startswith("--")}
    assert flags <= _check_options()


def test_workflow_runs_the_gate_and_uploads_html_and_sarif():
    workflow = yaml.safe_load((ROOT / "examples/ci/github-actions.yml").read_text())
    steps = workflow["jobs"]["evalguard"]["steps"]
    runs = [s["run"] for s in steps if "run" in s and "evalguard check" in s["run"]]
    text = " ".join(runs) + " " + workflow["env"]["AUDIT_ARGS"]
    flags = {token.split("=")[0] for token in shlex.split(text.replace("$AUDIT_ARGS", ""))
             if token.startswith("--")}
    assert flags <= _check_options()
    assert "--report html:" in text and "--report sarif:" in text  # both reports from the gate's own run
    assert "--format github" in text                                 # findings become PR annotations
    assert len(runs) == 1
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/upload-artifact") for u in uses)
    assert any(u.startswith("github/codeql-action/upload-sarif") for u in uses)
    assert steps[-1]["if"] == "steps.gate.outcome == 'failure'"
