"""pylint-style rule examples: every rule's bad.py must raise exactly its marked rules,
and its good.py nothing at all.

Model examples declare AUDIT = "model", INPUT_SHAPES, EXPECTED_RULES (and optionally
INPUT_DTYPE, ONNX, BACKENDS for --backends, GENERATE for --generate N); source examples declare AUDIT = "source" and mark lines with `# [EG301]`;
checkpoint examples (optimizer-state rules) declare AUDIT = "checkpoint", EXPECTED_RULES and a
``build_checkpoint(path)`` that saves the checkpoint audited with ``--model file.py:build_model``;
program examples (EG904) declare AUDIT = "program", EXPECTED_RULES and a ``build_program(path)``
that saves the TorchScript archive audited as a file (a bad one is refused, never loaded).
The module-level constants are read with ast, so examples are only executed through the
real CLI path (`--model file.py:build_model`).
"""
import ast
import json
import re
import runpy
from pathlib import Path

import pytest

from evalguard.catalogue import load_catalogue
from evalguard.checks import ENGINE_RULES

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "rules"
MARKER = re.compile(r"#\s*\[(EG\d{3}(?:\s*,\s*EG\d{3})*)\]\s*$")
# Rules raised by the loader or engine, exercised by the loading/engine tests instead.
NO_EXAMPLE_NEEDED = set(ENGINE_RULES) | {"EG405"}  # EG405 needs a CUDA GPU: tests/test_onnx*.py


def constants(path: Path) -> dict:
    values = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return values


def markers(path: Path) -> set[tuple[int, str]]:
    expected = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = MARKER.search(line)
        if match:
            expected |= {(number, rule.strip()) for rule in match.group(1).split(",")}
    return expected


# Backends that build native code (torch.compile, AOTInductor): tens of seconds per example.
COMPILING_BACKENDS = {"torch-compile", "aoti"}


def example_files():
    return sorted(EXAMPLES.glob("EG*/*.py"))


def example_params():
    """Each example as a pytest param; the ones that compile a backend carry the `compiler` marker."""
    params = []
    for path in example_files():
        backends = set(str(constants(path).get("BACKENDS", "")).split(","))
        marks = [pytest.mark.compiler] if backends & COMPILING_BACKENDS else []
        params.append(pytest.param(path, marks=marks, id=f"{path.parent.name}/{path.name}"))
    return params


def audit(run_cli, path: Path, spec: dict, tmp_path: Path) -> dict:
    if spec["AUDIT"] == "source":
        args = [path]
    elif spec["AUDIT"] == "program":
        program = tmp_path / "program.pt"
        runpy.run_path(str(path), run_name="rule_example")["build_program"](program)
        args = [program, "--no-onnx", *[a for shape in spec.get("INPUT_SHAPES", ()) for a in ("--input-shape", shape)]]
        assert not list(tmp_path.glob("*.would-be-written"))
    else:
        args = ["--model", f"{path}:build_model"]
        if spec["AUDIT"] == "checkpoint":
            checkpoint = tmp_path / "checkpoint.pt"
            runpy.run_path(str(path))["build_checkpoint"](checkpoint)
            args.insert(0, checkpoint)
        for shape in spec.get("INPUT_SHAPES", ()):
            args += ["--input-shape", shape]
        if "INPUT_DTYPE" in spec:
            args += ["--input-dtype", spec["INPUT_DTYPE"]]
        if not spec.get("ONNX", False):
            args.append("--no-onnx")
        if "BACKENDS" in spec:
            args += ["--backends", spec["BACKENDS"]]
        if "GENERATE" in spec:
            args += ["--generate", str(spec["GENERATE"])]
    code, out, err = run_cli("check", *args, "--format", "json")
    report = json.loads(out)
    refused = any(target["status"] == "refused" for target in report["targets"])
    # A refused file could not be audited: exit 2 with one error line; otherwise 0 or 1.
    assert code in ((2,) if refused else (0, 1)), err
    return report


def test_every_rule_with_a_check_has_bad_and_good_examples():
    implemented = {r.id for r in load_catalogue().values() if r.status == "implemented"}
    missing = [rule for rule in sorted(implemented - NO_EXAMPLE_NEEDED)
               if not (EXAMPLES / rule / "bad.py").is_file() or not (EXAMPLES / rule / "good.py").is_file()]
    assert not missing, f"rules without examples/rules/<id>/bad.py and good.py: {missing}"


@pytest.mark.parametrize("path", example_params())
def test_example(run_cli, path, tmp_path):
    spec = constants(path)
    assert spec.get("AUDIT") in ("model", "source", "checkpoint", "program"), f"{path} must set AUDIT"
    report = audit(run_cli, path, spec, tmp_path)
    # A bad saved program is refused by the loader (nothing of it runs); everything else is audited.
    refusable = spec["AUDIT"] == "program" and path.name == "bad.py"
    assert all(t["status"] in (("audited", "refused") if refusable else ("audited",))
               for t in report["targets"]), report["targets"]
    assert not list(tmp_path.glob("*.would-be-written")), "a program example's payload ran"
    if spec["AUDIT"] == "source":
        found = {(f["location"]["line"], f["rule"]) for f in report["findings"]}
        assert found == markers(path)
    else:
        found = {f["rule"] for f in report["findings"]}
        assert found == set(spec["EXPECTED_RULES"]), [(f["rule"], f["message"]) for f in report["findings"]]
    if path.name == "bad.py":
        assert report["findings"], "a bad example must raise its rule"
        assert path.parent.name in {f["rule"] for f in report["findings"]}
    else:
        assert report["findings"] == []
