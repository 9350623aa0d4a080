"""Time `evalguard check` over a registry of 8 small models: `--jobs 1` against `--jobs 2`
(and the old single process, `--no-isolate`).

    python bench/bench_jobs.py [--repeats 2] [--jobs 1,2,4] [--write bench/RESULTS.md]

The registry is 8 Hugging Face `save_pretrained` folders of different architectures built from
small configs (random weights, no download), audited in full (ONNX export included) with
token-id inputs. Runs are interleaved; the median wall time of each setting is reported.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
REGISTRY = HERE / "out" / "registry"
SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
         "vocab_size": 500, "max_position_embeddings": 64}


def _configs():
    import transformers as tf

    gpt2 = {"n_embd": 64, "n_layer": 2, "n_head": 2, "vocab_size": 500, "n_positions": 64,
            "bos_token_id": 0, "eos_token_id": 0}
    return {
        "bert": (tf.BertConfig(**SMALL), tf.BertModel),
        "roberta": (tf.RobertaConfig(**SMALL), tf.RobertaModel),
        "electra": (tf.ElectraConfig(**SMALL, embedding_size=64), tf.ElectraModel),
        "albert": (tf.AlbertConfig(**SMALL, embedding_size=32), tf.AlbertModel),
        "distilbert": (tf.DistilBertConfig(dim=64, n_layers=2, n_heads=2, hidden_dim=128, vocab_size=500,
                                           max_position_embeddings=64), tf.DistilBertModel),
        "gpt2": (tf.GPT2Config(**gpt2), tf.GPT2LMHeadModel),
        "llama": (tf.LlamaConfig(**SMALL, num_key_value_heads=2), tf.LlamaForCausalLM),
        "mpnet": (tf.MPNetConfig(**SMALL), tf.MPNetModel),
    }


def build_registry() -> list[Path]:
    import torch

    folders = []
    for name, (config, cls) in _configs().items():
        folder = REGISTRY / name
        if not (folder / "config.json").is_file():
            torch.manual_seed(0)
            cls(config).save_pretrained(folder)
        folders.append(folder)
    return folders


def timed(cmd: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--jobs", default="1,2", help="comma-separated --jobs values to time")
    parser.add_argument("--write", help="append the markdown lines to this file")
    args = parser.parse_args()
    folders = build_registry()
    base = [sys.executable, "-m", "evalguard", "check", *map(str, folders), "--input-shape", "2x16",
            "--input-dtype", "int64", "--quiet", "--format", "json", "--output", os.devnull]
    settings = {"--no-isolate": ["--no-isolate"]}
    settings.update({f"--jobs {n}": ["--jobs", n] for n in args.jobs.split(",")})
    runs: dict[str, list[float]] = {label: [] for label in settings}
    for _ in range(args.repeats):
        for label, extra in settings.items():
            runs[label].append(timed(base + extra)[0])
            print(f"{label}: {runs[label][-1]:.1f} s", file=sys.stderr, flush=True)
    median = {label: statistics.median(times) for label, times in runs.items()}
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = float("nan")
    heading = (f"{len(folders)} models ({', '.join(f.name for f in folders)}), {os.cpu_count()} cores, "
               f"load average {load:.1f} at the end, median of {args.repeats}:")
    lines = [heading, "",
             "| setting | wall s | vs --jobs 1 |", "|---|---|---|"]
    for label in settings:
        lines.append(f"| `{label}` | {median[label]:.1f} | {median[label] / median['--jobs 1']:.2f} |")
    lines += ["", "Raw runs (s): " + "; ".join(f"{k}: {' / '.join(f'{t:.1f}' for t in v)}" for k, v in runs.items()), ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        with open(args.write, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
