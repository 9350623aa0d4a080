"""The README's demo: real findings, a clean twin, and reports that diff cleanly between runs."""
import json
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo" / "model.py"


def test_demo_shows_the_bugs_it_was_built_with(run_cli):
    code, out, err = run_cli("check", "--model", f"{DEMO}:build_model", "--input-shape", "2x3x32x32",
                             "--format", "json")
    report = json.loads(out)
    assert code == 1, err
    assert {f["rule"] for f in report["findings"]} == {"EG101", "EG102", "EG201", "EG206"}
    eg102 = next(f for f in report["findings"] if f["rule"] == "EG102")
    assert eg102["location"]["module"] == "drop"
    assert [row["passed"] for row in report["targets"][0]["facts"]["onnx"]["parity"]] == [True, True]


def test_demo_good_model_passes(run_cli):
    code, out, _ = run_cli("check", "--model", f"{DEMO}:good_model", "--input-shape", "2x3x32x32",
                           "--fail-on", "info")
    assert code == 0
    assert "all checks passed" in out


def test_demo_good_model_without_onnx_is_not_called_all_passed(run_cli):
    code, out, _ = run_cli("check", "--model", f"{DEMO}:good_model", "--input-shape", "2x3x32x32",
                           "--no-onnx", "--fail-on", "info")
    assert code == 0
    assert "all checks passed" not in out
    assert "not checked: EG401, EG402, EG403, EG404, EG405, EG406, EG407: ONNX checks turned off (--no-onnx)" in out


def test_two_runs_give_identical_json(run_cli):
    args = ("check", "--model", f"{DEMO}:build_model", "--input-shape", "2x3x32x32", "--format", "json", "--no-onnx")
    first, second = run_cli(*args)[1], run_cli(*args)[1]
    # every field but each target's measured usage (wall time, peak RSS) is the same, byte for byte
    assert _without_usage(first) == _without_usage(second)
    assert all("seconds" in t["usage"] for t in json.loads(first)["targets"])


def _without_usage(text: str) -> str:
    data = json.loads(text)
    for target in data["targets"]:
        target.pop("usage", None)
    return json.dumps(data, indent=2)
