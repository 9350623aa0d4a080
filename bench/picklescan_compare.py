"""Compare evalguard's verdicts with picklescan's on the issue-20 corpus (not a test dependency).

Usage: PYTHONPATH=. python bench/picklescan_compare.py /path/to/picklescan
(picklescan installed in its own venv: python3 -m venv /tmp/ps && /tmp/ps/bin/pip install picklescan).
A case is "caught" when evalguard refuses it or errors out, and when picklescan exits non-zero.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "security"))

import payloads as P

from evalguard.errors import EvalguardError
from evalguard.loading import load_target
from evalguard.subject import AuditOptions


def cases(tmp: Path):
    m = tmp / "marker"
    def pt2(name, target):
        return P.pt2_with(tmp, name, lambda n, d: [
            (n, P.edit_program(d, P.first_node_target(target)) if "models/" in n else d)])
    yield "torchscript __setstate__ from_file", P.torchscript(tmp, P.SetStateFromFile(str(m)), "a.pt"), {}
    yield "torchscript forward from_file", P.torchscript(tmp, P.ForwardFromFile(str(m)), "b.pt"), {}
    yield "torchscript custom op", P.torchscript_custom_op(tmp), {}
    yield "pt2 aten.from_file node", pt2("c.pt2", "torch.ops.aten.from_file.default"), {}
    yield "pt2 custom namespace op", pt2("d.pt2", "torch.ops.evil.run.default"), {}
    yield "duplicate data.pkl", P.duplicate_member(tmp, m), {}
    yield "case-variant data.pkl", P.case_variant_member(tmp, m), {}
    yield "../ member", P.parent_relative_member(tmp, m), {}
    yield "concatenated archives", P.concatenated_archives(tmp, m), {}
    yield "legacy magic in protocol 4", P.legacy_other_protocol_magic(tmp, m), {}
    yield "numpy.memmap (trusted numpy)", P.numpy_memmap(tmp, m), {"trust_modules": ("numpy",)}
    yield "forged numpy dtype", P.forged_numpy_dtype(tmp), {}
    yield "folder with extra pickles", P.folder_with_extra_pickles(tmp, m), {}
    yield "onnx external ../", _onnx_outside(tmp), {}
    yield "onnx custom domain", P.onnx_model(tmp, "e.onnx", domain="com.evil"), {}
    yield "zip bomb", P.zip_bomb(tmp), {}
    yield "bytearray(10**12)", P.sized_constructor(tmp, "bytearray", 10**12), {}
    yield "config.json bomb", P.config_bomb(tmp), {}
    yield "99 MB safetensors header", P.safetensors_huge_header(tmp), {}


def _onnx_outside(tmp: Path) -> Path:
    folder = tmp / "onnx_model"
    folder.mkdir()
    return P.onnx_model(folder, "m.onnx", location="../outside.bin")


def main(picklescan: str) -> None:
    rows, caught = [], {"evalguard": 0, "picklescan": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, options in cases(Path(tmp)):
            try:
                load_target(str(path), AuditOptions(**options))
                ours = "clean"
            except EvalguardError as exc:
                ours = type(exc).__name__
            code = subprocess.run([picklescan, "-p", str(path)], capture_output=True, check=False).returncode
            theirs = {0: "clean", 1: "dangerous"}.get(code, f"error ({code})")
            caught["evalguard"] += ours != "clean"
            caught["picklescan"] += theirs != "clean"
            rows.append((name, ours, theirs))
        marker = (Path(tmp) / "marker").exists()
    width = max(len(r[0]) for r in rows)
    for name, ours, theirs in rows:
        print(f"{name:<{width}}  evalguard: {ours:<14} picklescan: {theirs}")
    print(f"caught of {len(rows)}: evalguard {caught['evalguard']}, picklescan {caught['picklescan']}; "
          f"marker created: {marker}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "picklescan")
