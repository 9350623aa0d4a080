"""Wall time of `evalguard check` on opcode floods the scan must refuse by its opcode budget
(red-team round 3, a13/a20: <= 10 s each), and on a benign folder next to them.

Builds the payloads in a temporary folder (nothing binary is committed) and times one CLI run per
target, a fresh process each (torch import included). Prints a table:

    python bench/bench_scan_budget.py
"""
from __future__ import annotations

import gzip
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "security"))


def flood(pairs: int) -> bytes:
    return b"\x80\x04" + b"N0" * pairs + b"N."


def build(folder: Path) -> dict[str, list[str]]:
    import payloads as P

    gz = P.safetensors_folder(folder, "gz_flood")
    (gz / "extra.pkl.gz").write_bytes(gzip.compress(flood(200 << 20), 1))   # 400 MiB once inflated
    P.torch_save_with_data_pkl(folder, "flood.pt", flood(20 << 20))            # a 40 MiB data.pkl
    P.safetensors_folder(folder, "benign")
    return {"folder + 400 MiB gz flood (EG905)": ["gz_flood"], "flood.pt 40 MiB data.pkl (EG905)": ["flood.pt"],
            "benign folder (audited, EG208 stub weights)": ["benign"]}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.monotonic()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        rows = [("(baseline: import torch)", time.monotonic() - start, 0)]
        for label, args in build(folder).items():
            start = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "evalguard", "check", *args, "--no-onnx"], cwd=folder,
                                  capture_output=True, text=True)
            rows.append((label, time.monotonic() - start, done.returncode))
    for label, seconds, code in rows:
        print(f"{label:44s} {seconds:6.2f} s  exit {code}")


if __name__ == "__main__":
    main()
