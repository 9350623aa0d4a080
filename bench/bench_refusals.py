"""Wall time of `evalguard check` on files it must refuse or fail quickly (issue 25: <= 10 s each).

Builds the payloads in a temporary folder (nothing binary is committed) and times one CLI run per
file, a fresh process each (torch import included, as a user sees it). Prints a table:

    python bench/bench_refusals.py
"""
from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "security"))


def build(folder: Path) -> dict[str, list[str]]:
    import payloads as P
    import torch
    from test_op_allowlist import AliasRead

    torch.jit.save(torch.jit.script(AliasRead()), str(folder / "reshape_alias.pt"))
    tower = P.pt2_with(folder, "tower.pt2", lambda n, d: [
        (n, P.edit_program(d, P.first_expr("((s0+s1+1)**64)**64")) if "models/" in n else d)])
    header = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    (folder / "deep.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return {"reshape_alias.pt (EG904)": ["reshape_alias.pt", "--input-shape", "2x4"],
            "tower.pt2 (refused)": [tower.name], "deep.safetensors (EG905)": ["deep.safetensors"]}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.monotonic()
        subprocess.run([sys.executable, "-c", "import torch, torch.export"], check=True)
        rows = [("(baseline: import torch)", time.monotonic() - start, 0)]
        for label, args in build(folder).items():
            start = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "evalguard", "check", *args, "--no-onnx"], cwd=folder,
                                  capture_output=True, text=True)
            rows.append((label, time.monotonic() - start, done.returncode))
    for label, seconds, code in rows:
        print(f"{label:32s} {seconds:6.2f} s  exit {code}")


if __name__ == "__main__":
    main()
