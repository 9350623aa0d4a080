"""Where one `evalguard check` spends its wall time and memory, step by step.

    python bench/profile_audit.py -- check bench/out/bert4.pt --model bench/models.py:bert4 \
        --input-shape 2x128 --input-dtype int64 --format json --output /tmp/x.json

Runs the command line in this process with a wall-clock timer (and the resident-set high-water
mark) around the steps named in ``STEPS``. Times are inclusive (a step inside another counts in
both) and each line is one call. Cheaper and less distorting than cProfile on a forward pass.
"""
from __future__ import annotations

import functools
import importlib
import resource
import sys
import time

#: module:function or module:Class.method, the steps worth naming.
STEPS = (
    "evalguard.loading:load_target",
    "evalguard.loading.formats:scan_torch_zip",
    "evalguard.loading.factory:build_model",
    "evalguard.loading.safe_load:vet",
    "evalguard.loading.safe_load:trial_load",
    "evalguard.loading.safe_load:torch_load",
    "evalguard.loading.hf_folder:transformers_load",
    "evalguard.checks.eval_mode.check:run",
    "evalguard.checks.architecture.check:run",
    "evalguard.checks.architecture.static:findings",
    "evalguard.checks.architecture.check:_dataflow",
    "evalguard.checks.weights.check:run",
    "evalguard.checks.optimizer.check:run",
    "evalguard.checks.onnx.check:run",
    "evalguard.checks.onnx.export:reference",
    "evalguard.checks.onnx.export:export",
    "evalguard.checks.onnx.runtime:session",
    "evalguard.checks.onnx.runtime:run",
    "evalguard.checks.onnx.static:load",
)

T0 = time.perf_counter()
LOG: list[tuple[float, float, float, str]] = []
DEPTH = [0]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def wrap(owner, attr: str, label: str) -> None:
    func = getattr(owner, attr)

    @functools.wraps(func)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        DEPTH[0] += 1
        try:
            return func(*args, **kwargs)
        finally:
            DEPTH[0] -= 1
            LOG.append((start - T0, time.perf_counter() - start, peak_mib(), "  " * DEPTH[0] + label))

    setattr(owner, attr, timed)


def install() -> None:
    for step in STEPS:
        module_name, _, path = step.partition(":")
        try:
            owner = importlib.import_module(module_name)
        except ImportError:
            continue
        *parents, attr = path.split(".")
        for part in parents:
            owner = getattr(owner, part)
        if hasattr(owner, attr):
            wrap(owner, attr, step.replace("evalguard.", ""))


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    install()
    from evalguard.cli import main as cli_main

    print(f"{'start s':>8} {'took s':>8} {'peak MiB':>9}  step (imports before it: {time.perf_counter() - T0:.2f} s)")
    code = 0
    try:
        cli_main(args)
    except SystemExit as exc:
        code = exc.code or 0
    for start, took, peak, label in sorted(LOG):
        print(f"{start:8.2f} {took:8.2f} {peak:9.0f}  {label}")
    print(f"total {time.perf_counter() - T0:.2f} s, peak {peak_mib():.0f} MiB")
    return code if isinstance(code, int) else 1


if __name__ == "__main__":
    sys.exit(main())
