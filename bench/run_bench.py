"""Time `evalguard check` against the bare script a user would write instead.

    python bench/run_bench.py [--models mlp,resnet50,bert] [--repeats 3] [--write bench/RESULTS.md]

Runs are interleaved (bare, evalguard, bare, evalguard, ...) and the median wall time of each
is reported with their ratio; peak RSS of each process is read from wait4's rusage.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
sys.path.insert(0, str(HERE))


def timed(cmd: list[str]) -> tuple[float, float, int]:
    """(seconds, peak RSS in MiB, exit code) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, proc.returncode


def save_checkpoint(name: str) -> Path:
    import models
    import torch

    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}.pt"
    if not path.exists():
        torch.save(getattr(models, models.MODELS[name][0])().state_dict(), path)
    return path


def bench_model(name: str, repeats: int) -> dict:
    import models

    factory, shapes, dtype = models.MODELS[name]
    checkpoint = save_checkpoint(name)
    spec = f"{HERE / 'models.py'}:{factory}"
    bare = [sys.executable, str(HERE / "bare_script.py"), str(checkpoint), "--factory", spec,
            "--shape", shapes[0], "--dtype", dtype]
    guard = [sys.executable, "-m", "evalguard", "check", str(checkpoint), "--model", spec,
             "--input-dtype", dtype, "--format", "json", "--output", str(OUT / f"{name}.json")]
    for shape in shapes:
        guard += ["--input-shape", shape]
    runs = {"bare": [], "evalguard": []}
    rss = {"bare": [], "evalguard": []}
    for _ in range(repeats):
        for label, cmd in (("bare", bare), ("evalguard", guard)):
            seconds, peak, _ = timed(cmd)
            runs[label].append(seconds)
            rss[label].append(peak)
    bare_s, guard_s = statistics.median(runs["bare"]), statistics.median(runs["evalguard"])
    return {"model": name, "checkpoint_mib": checkpoint.stat().st_size / 2**20,
            "bare_s": bare_s, "evalguard_s": guard_s, "ratio": guard_s / bare_s,
            "bare_rss_mib": max(rss["bare"]), "evalguard_rss_mib": max(rss["evalguard"]),
            "runs": runs}


def bench_cli_startup(repeats: int = 5) -> dict:
    results = {}
    for label, args in (("--help", ["--help"]), ("rules", ["rules"])):
        times = [timed([sys.executable, "-m", "evalguard", *args])[0] for _ in range(repeats)]
        results[label] = statistics.median(times)
    return results


def versions() -> str:
    from importlib.metadata import version

    parts = [f"Python {platform.python_version()}"]
    for pkg in ("torch", "onnx", "onnxruntime", "onnxscript", "transformers"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except Exception:  # noqa: BLE001
            pass
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="mlp,resnet50,bert")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", help="append a markdown table to this file")
    args = parser.parse_args()
    rows = [bench_model(name, args.repeats) for name in args.models.split(",")]
    startup = bench_cli_startup()
    lines = [f"Machine: {os.cpu_count()} cores, {platform.machine()}; {versions()}", "",
             "| model | checkpoint MiB | bare script s | evalguard check s | ratio | bare peak RSS MiB | evalguard peak RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['checkpoint_mib']:.0f} | {r['bare_s']:.2f} | {r['evalguard_s']:.2f} | "
                     f"{r['ratio']:.2f} | {r['bare_rss_mib']:.0f} | {r['evalguard_rss_mib']:.0f} |")
    lines += ["", f"`evalguard --help`: {startup['--help']:.3f} s; `evalguard rules`: {startup['rules']:.3f} s "
                  f"(median of 5, process start included)", ""]
    text = "\n".join(lines)
    print(text)
    for r in rows:
        print(r["model"], {k: [round(x, 2) for x in v] for k, v in r["runs"].items()})
    if args.write:
        with open(args.write, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
