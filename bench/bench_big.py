"""Peak memory of auditing a big decoder saved as sharded safetensors (issue 17).

    python bench/bench_big.py --size 1b --dtype bfloat16 [--full] [--folder /tmp/big]

Builds a Llama-style decoder from a config with random weights (on the meta device, then
filled in place, so building costs one copy of the weights), saves it with
``save_pretrained(max_shard_size=...)`` as sharded safetensors, then runs ``evalguard check``
on the folder in a fresh process: ``--no-onnx`` always, the full audit with ``--full``. Peak
RSS is read from ``wait4`` and set against the checkpoint size on disk. Not a test: building
and auditing a 1B model takes minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Llama-style shapes; "1b" is TinyLlama-1.1B's (22 layers, width 2048, GQA with 4 KV heads).
SIZES = {
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=2, num_attention_heads=8,
                 num_key_value_heads=2, vocab_size=32000),
    "300m": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=20, num_attention_heads=16,
                 num_key_value_heads=4, vocab_size=32000),
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, vocab_size=32000),
}


def build(folder: Path, size: str, dtype_name: str, shard: str) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dtype = getattr(torch, dtype_name)
    config = LlamaConfig(max_position_embeddings=2048, tie_word_embeddings=False, **SIZES[size])
    started = time.perf_counter()
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to_empty(device="cpu").to(dtype)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02, generator=generator)
        model.model.rotary_emb.inv_freq.copy_(model.model.rotary_emb.original_inv_freq)
    model.eval().save_pretrained(folder, max_shard_size=shard)
    params = sum(p.numel() for p in model.parameters())
    return {"parameters": params, "build_and_save_s": round(time.perf_counter() - started, 1)}


def _rss_mib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _watch(proc: subprocess.Popen, limit_mib: int, state: dict, done: threading.Event) -> None:
    """Kill the audit when its RSS passes ``limit_mib`` (the machine is shared).

    The watcher never reaps the child (no ``poll()``): ``os.wait4`` in ``audit`` must be the one
    to collect it, or its rusage (the peak RSS this bench measures) is lost to a ChildProcessError.
    """
    while not done.wait(0.2):
        if _rss_mib(proc.pid) > limit_mib:
            state["killed_above_mib"] = limit_mib
            proc.kill()
            return


def audit(folder: Path, extra: list[str], report: Path, limit_mib: int) -> dict:
    cmd = [sys.executable, "-m", "evalguard", "check", str(folder), "--format", "json", "-o", str(report),
           "--input-shape", "2x16", "--input-dtype", "int64", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state: dict = {}
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(proc, limit_mib, state, done), daemon=True)
    watcher.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    result = {"cmd": " ".join(cmd[2:]), "exit": os.waitstatus_to_exitcode(status), "seconds": round(seconds, 1),
              "peak_rss_mib": round(usage.ru_maxrss / 1024), **state}
    if report.is_file():
        data = json.loads(report.read_text())
        target = data["targets"][0]
        result["findings"] = [f"{f['rule']} {f['severity']}: {f['message'][:160]}" for f in data["findings"]]
        result["not_passed"] = {rule: f"{c['status']}: {c['reason']}" for rule, c in target["coverage"].items()
                                if c["status"] in ("skipped", "failed")}
        paired = (target["facts"].get("eval_mode") or {}).get("paired") or {}
        result["tolerance"] = paired.get("tolerance")
        result["batch_tolerance"] = paired.get("batch_tolerance")
        onnx = target["facts"].get("onnx") or {}
        result["onnx_parity"] = [{k: r.get(k) for k in ("dtype", "batch", "max_abs_diff", "passed")}
                                 for r in onnx.get("parity") or []]
    else:
        result["stderr"] = err[-2000:]
        result["stdout"] = out[-1000:]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    parser.add_argument("--shard", default="500MB", help="save_pretrained(max_shard_size=...)")
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--full", action="store_true", help="also the full audit (ONNX export, external data)")
    parser.add_argument("--kill-above-gib", type=float, default=14.0,
                        help="kill an audit whose RSS passes this (the machine is shared)")
    parser.add_argument("--only-full", action="store_true", help="skip the --no-onnx run")
    parser.add_argument("--no-build", action="store_true", help="reuse the folder as it is")
    args = parser.parse_args()
    folder = args.folder or Path(f"/tmp/evalguard-bench-{args.size}-{args.dtype}")
    results: dict = {"size": args.size, "dtype": args.dtype, "folder": str(folder)}
    if not args.no_build:
        folder.mkdir(parents=True, exist_ok=True)
        results.update(build(folder, args.size, args.dtype, args.shard))
    shards = sorted(folder.glob("*.safetensors"))
    checkpoint = sum(f.stat().st_size for f in shards)
    results.update(shards=len(shards), checkpoint_mib=round(checkpoint / 2**20))
    runs = ([] if args.only_full else [("no_onnx", ["--no-onnx"])]) + ([("full", [])] if args.full else [])
    for name, extra in runs:
        run = audit(folder, extra, folder.parent / f"{folder.name}-{name}.json", int(args.kill_above_gib * 1024))
        run["rss_over_checkpoint"] = round(run["peak_rss_mib"] * 2**20 / checkpoint, 2)
        results[name] = run
        print(json.dumps({name: run}, indent=1), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
