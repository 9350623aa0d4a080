"""Runtime backends and generation parity on tiny transformers models (issue 31).

    . /work/venvs/runtime/bin/activate   # torch 2.13.0, openvino 2026.4.1
    OMP_NUM_THREADS=1 python bench/bench_runtime.py [--backends LIST] [--generate N] > table.md

Each model is built from a tiny config with random weights (BatchNorm statistics from a few
training-mode passes), audited in a fresh ``evalguard check`` process with ``--backends``, and the
backend table of ``facts.onnx.backends`` is printed as markdown: build seconds, median latency at
both batch sizes and the largest error against eager PyTorch. The language models also run
``--generate N``: the step export time and the largest per-step logits difference of each rule.
Timings are from the audit's own facts (median of five runs after warm-up), on whatever machine
runs this; compare rows of one run only.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = "onnxruntime,ort-optimized,torchscript,openvino,openvino-onnx,ort-int8"

FACTORY = '''import torch
import transformers as t


def build_model():
    torch.manual_seed(0)
    model = {build}
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(**{calibrate})
    return model.eval()
'''

MODELS = {
    "bert": ("t.BertForSequenceClassification(t.BertConfig(vocab_size=128, hidden_size=32, num_hidden_layers=2, "
             "num_attention_heads=4, intermediate_size=64, max_position_embeddings=64, num_labels=3))",
             "{'input_ids': torch.randint(0, 128, (4, 16))}"),
    "vit": ("t.ViTForImageClassification(t.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, "
            "num_attention_heads=4, intermediate_size=64, num_labels=5))",
            "{'pixel_values': torch.randn(4, 3, 32, 32)}"),
    "resnet": ("t.ResNetForImageClassification(t.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], "
               "layer_type='bottleneck', num_labels=5))",
               "{'pixel_values': torch.randn(4, 3, 32, 32)}"),
    "gpt2": ("t.GPT2LMHeadModel(t.GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64, "
             "bos_token_id=0, eos_token_id=0, pad_token_id=0))",
             "{'input_ids': torch.randint(1, 128, (4, 16))}"),
    "llama": ("t.LlamaForCausalLM(t.LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, "
              "num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))",
              "{'input_ids': torch.randint(0, 128, (4, 16))}"),
}
LMS = ("gpt2", "llama")


def audit(name: str, backends: str, generate: int, folder: Path) -> tuple[dict, float]:
    build, calibrate = MODELS[name]
    factory = folder / f"{name}_factory.py"
    factory.write_text(FACTORY.format(build=build, calibrate=calibrate))
    args = [sys.executable, "-m", "evalguard", "check", "--model", f"{factory}:build_model",
            "--backends", backends, "--format", "json", "--exit-zero"]
    if name in LMS and generate:
        args += ["--generate", str(generate)]
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=folder)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{name}: exit {proc.returncode}: {proc.stderr[-1500:]}")
    return json.loads(proc.stdout), wall


def fmt(value, spec=".3g") -> str:
    return "-" if value is None else format(value, spec) if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default=BACKENDS)
    parser.add_argument("--generate", type=int, default=8)
    parser.add_argument("--models", default=",".join(MODELS))
    options = parser.parse_args()
    print("| model | backend | status | build s | median latency ms (batch) | max abs error vs eager |")
    print("|---|---|---|---|---|---|")
    generation = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in options.models.split(","):
            report, wall = audit(name, options.backends, options.generate, Path(tmp))
            [target] = report["targets"]
            rules = sorted({f["rule"] for f in report["findings"]})
            for row in target["facts"].get("onnx", {}).get("backends", []):
                latency = row.get("latency_ms") or {}
                lat = " / ".join(f"{fmt(latency[b], '.3f')} (b{b})" for b in sorted(latency, key=int, reverse=True))
                status = row["status"] if row["status"] != "skipped" else f"skipped: {row['skip_reason']}"
                print(f"| {name} | {row['backend']} | {status} | {fmt(row.get('build_seconds'))} | {lat} | "
                      f"{fmt(row.get('max_abs_diff'))} |")
            print(f"| {name} | (audit) | findings: {', '.join(rules) or 'none'} | wall {wall:.1f} s | | |")
            facts = target["facts"].get("generation")
            if facts:
                worst = {}
                for row in facts["comparisons"]:
                    worst[row["rule"]] = max(worst.get(row["rule"], 0.0), max(row["max_abs_diff"] or [0.0]))
                generation.append((name, facts["steps"], facts.get("export_seconds"), worst))
    if generation:
        print()
        print("| model | N | step export s | EG408 max logits diff | EG409 | EG410 |")
        print("|---|---|---|---|---|---|")
        for name, steps, export, worst in generation:
            print(f"| {name} | {steps} | {fmt(export)} | {fmt(worst.get('EG408'))} | {fmt(worst.get('EG409'))} | "
                  f"{fmt(worst.get('EG410'))} |")


if __name__ == "__main__":
    main()
