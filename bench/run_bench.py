"""Time the full `evalguard check` against the scripts a user would write instead.

    python bench/run_bench.py [--models bert4,resnet_small] [--repeats 3] [--write FILE]

Per model, each round runs, one after the other, in fresh processes:

* ``bare-default``: ``bare_script.py`` with torch's default exporter (dynamo in torch 2.13);
* ``bare-fast``: the same with ``dynamo=False``, the fastest honest script;
* ``evalguard``: ``evalguard check STATE_DICT --model models.py:FN`` with every default check;
* ``evalguard-pickle``: ``evalguard check FULL_MODULE.pt --trust-module ...``, the whole
  module pickled with ``torch.save(model)`` (adds the sandboxed trial load of trusted classes).

Rounds are interleaved (a, b, c, d, a, b, ...) so that load from other users hits every variant
alike; the tables show medians of wall seconds and of peak RSS (from ``wait4``), the ratios
against ``bare-fast`` and ``bare-default``, and the spread (min-max) as a noise measure.
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
VARIANTS = ("bare-default", "bare-fast", "evalguard", "evalguard-pickle")
MODEL_NAMES = ("bert4", "resnet_small", "bert", "resnet50", "gpt2", "mlp")


class Failed(Exception):
    """A variant that cannot do the job on this model (e.g. the TorchScript exporter on GPT-2)."""


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MiB, CPU seconds) of one child process, run in this folder.
    CPU seconds (user + system, the child's own reaped children included) are less sensitive
    than wall time to other users of a shared machine. Raises Failed with the error's last line."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=HERE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        last = next((line for line in reversed(err.strip().splitlines()) if line.strip()), "")
        raise Failed(f"exit {proc.returncode}: {last[:160]}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def save_checkpoints(name: str) -> tuple[Path, Path]:
    """The state_dict and the whole pickled module of one benchmark model (made once)."""
    import models
    import torch

    OUT.mkdir(exist_ok=True)
    weights, full = OUT / f"{name}.pt", OUT / f"{name}_full.pt"
    if not (weights.exists() and full.exists()):
        model = getattr(models, models.MODELS[name][0])()
        torch.save(model.state_dict(), weights)
        torch.save(model, full)   # classes pickled as models.* and transformers.*
    return weights, full


def commands(name: str) -> dict[str, list[str]]:
    import models

    factory, shapes, dtype = models.MODELS[name]
    weights, full = save_checkpoints(name)
    bare = [sys.executable, "bare_script.py", str(weights), "--factory", f"models.py:{factory}",
            "--shape", shapes[0], "--dtype", dtype]
    inputs = ["--input-dtype", dtype] + [flag for shape in shapes for flag in ("--input-shape", shape)]
    guard = [sys.executable, "-m", "evalguard", "check", "--format", "json", *inputs]
    return {
        "bare-default": bare,
        "bare-fast": bare + ["--exporter", "fast"],
        "evalguard": guard + [str(weights), "--model", f"models.py:{factory}",
                              "--output", str(OUT / f"{name}.json")],
        "evalguard-pickle": guard + [str(full), "--trust-module", "models", "--trust-module", "transformers",
                                     "--output", str(OUT / f"{name}_full.json")],
    }


def bench_model(name: str, repeats: int, variants) -> dict:
    cmds = commands(name)
    runs = {v: [] for v in variants}
    rss = {v: [] for v in variants}
    cpu = {v: [] for v in variants}
    failed: dict[str, str] = {}
    for _ in range(repeats):
        for variant in variants:
            if variant in failed:
                continue   # a variant that cannot do the job fails the same way every round
            try:
                seconds, peak, cpu_seconds = timed(cmds[variant])
            except Failed as exc:
                failed[variant] = str(exc)
                continue
            runs[variant].append(seconds)
            rss[variant].append(peak)
            cpu[variant].append(cpu_seconds)
    ok = [v for v in variants if v not in failed]
    return {"model": name, "checkpoint_mib": (OUT / f"{name}.pt").stat().st_size / 2**20,
            "seconds": {v: statistics.median(runs[v]) for v in ok},
            "mib": {v: statistics.median(rss[v]) for v in ok},
            "cpu": {v: statistics.median(cpu[v]) for v in ok}, "runs": runs, "rss": rss, "cpu_runs": cpu,
            "failed": failed}


def versions() -> str:
    from importlib.metadata import version

    parts = [f"Python {platform.python_version()}"]
    for pkg in ("torch", "onnx", "onnxruntime", "onnxscript", "transformers"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except Exception:  # noqa: BLE001
            pass
    return ", ".join(parts)


def table(row: dict, variants) -> list[str]:
    """The model's markdown table. ``fastest bare`` is the quicker of the two bare scripts that
    worked on this model (bare-fast, unless the TorchScript exporter cannot export it)."""
    secs, mib, cpu, failed = row["seconds"], row["mib"], row["cpu"], row["failed"]
    bare = [v for v in ("bare-fast", "bare-default") if v in secs]
    fastest = min(bare, key=secs.get) if bare else None
    lines = [f"**{row['model']}** (state_dict {row['checkpoint_mib']:.0f} MiB; fastest bare script: "
             f"{fastest or 'none worked'})", "",
             "| variant | s (median) | s min-max | CPU s (median) | peak MiB (median) | time / fastest bare "
             "| time / bare-default | CPU / fastest bare | RSS / fastest bare | RSS / bare-default |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for v in variants:
        if v in failed:
            lines.append(f"| {v} | failed: {failed[v].replace('|', '/')} | | | | | | | | |")
            continue

        def ratio(base, values, v=v):
            return f"{values[v] / values[base]:.2f}" if base in values else "-"
        lines.append(f"| {v} | {secs[v]:.2f} | {min(row['runs'][v]):.2f}-{max(row['runs'][v]):.2f} | {cpu[v]:.2f} "
                     f"| {mib[v]:.0f} | {ratio(fastest, secs)} | {ratio('bare-default', secs)} "
                     f"| {ratio(fastest, cpu)} | {ratio(fastest, mib)} | {ratio('bare-default', mib)} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="bert4,resnet_small",
                        help=f"comma-separated, from {', '.join(MODEL_NAMES)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--write", help="also write the markdown to this file")
    args = parser.parse_args()
    variants = tuple(args.variants.split(","))
    load_before = os.getloadavg()
    started = time.time()
    rows = [bench_model(name, args.repeats, variants) for name in args.models.split(",")]
    load_after = os.getloadavg()
    lines = [f"`python bench/run_bench.py --models {args.models} --repeats {args.repeats}` "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, {time.time() - started:.0f} s)", "",
             f"Machine: {os.cpu_count()} cores, {platform.machine()}; {versions()}; load average "
             f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (1-minute)", ""]
    for row in rows:
        lines += table(row, variants)
    text = "\n".join(lines)
    print(text)
    for row in rows:
        if row["failed"]:
            print(row["model"], "failed", row["failed"])
        print(row["model"], "wall", {v: [round(x, 2) for x in row["runs"][v]] for v in variants})
        print(row["model"], "cpu", {v: [round(x, 2) for x in row["cpu_runs"][v]] for v in variants})
        print(row["model"], "MiB", {v: [round(x) for x in row["rss"][v]] for v in variants})
    if args.write:
        Path(args.write).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
