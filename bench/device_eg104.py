"""Why a clean ViT gave EG104 with --device cuda: the audit with and without exact kernels.

    python bench/device_eg104.py      (on a machine with a GPU)
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    import torch
    from device_cuda import models

    import evalguard
    from evalguard.checks import running

    if not torch.cuda.is_available():
        print("no CUDA GPU here")
        return 0
    exact = running.exact_kernels
    print("defaults: matmul tf32", torch.backends.cuda.matmul.allow_tf32, "cudnn tf32", torch.backends.cudnn.allow_tf32)
    for name, model, inputs in models():
        for label in ("exact kernels", "library defaults"):
            running.exact_kernels = exact if label == "exact kernels" else (lambda device: contextlib.nullcontext())
            report = evalguard.audit(model, inputs, select=["EG1"], device="cuda", name=name)
            found = [(f.rule, f.evidence.get("max_abs_diff"), f.location.module) for f in report.findings]
            print(f"{name:7s} {label:16s} {found}")
    running.exact_kernels = exact
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
