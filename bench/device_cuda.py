"""The CUDA paths on a real GPU: `--device cuda` audits of real architectures, what EG405 did,
and how far eager PyTorch on the GPU is from eager on the CPU.

    python bench/device_cuda.py [--out cuda_report.json]

Meant for a machine with a GPU (the team's device runs); on a CPU-only machine it says so
and exits 0. Writes one JSON document and prints a table; numbers go to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


def models():
    """(name, eval-mode model, inputs) built from configs with random weights."""
    import torch
    import transformers as tf

    def ids():
        return {"input_ids": torch.randint(0, 100, (4, 16), generator=torch.Generator().manual_seed(0))}

    def pixels(size=32):
        return {"pixel_values": torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))}

    def resnet():
        model = tf.ResNetModel(tf.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1]))
        model.train()
        with torch.no_grad():                      # real BatchNorm statistics before eval
            for _ in range(3):
                model(**pixels(64))
        return model.eval()

    yield "bert", tf.BertModel(tf.BertConfig(vocab_size=100, max_position_embeddings=32, **SMALL)).eval(), ids()
    yield "gpt2", tf.GPT2Model(tf.GPT2Config(vocab_size=100, n_positions=32, n_embd=64, n_layer=2,
                                             n_head=4)).eval(), ids()
    yield "vit", tf.ViTModel(tf.ViTConfig(image_size=32, patch_size=8, **SMALL)).eval(), pixels()
    yield "resnet", resnet(), pixels(64)


def cpu_vs_cuda(model, inputs) -> dict:
    """Eager PyTorch on CUDA (TF32 as configured by default, then off) against eager on CPU."""
    import copy

    import torch

    from evalguard.tensors import flatten_outputs

    with torch.no_grad():
        cpu = dict(flatten_outputs(model(**inputs)))
        gpu_model = copy.deepcopy(model).cuda()
        result = {}
        for label, tf32 in (("default", torch.backends.cuda.matmul.allow_tf32), ("tf32_off", False)):
            saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
            try:
                out = dict(flatten_outputs(gpu_model(**{k: v.cuda() for k, v in inputs.items()})))
            finally:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
            result[label] = max(float((out[k].float().cpu() - cpu[k].float()).abs().max()) for k in cpu)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="cuda_report.json")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    import evalguard

    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu_visible": torch.cuda.is_available(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "onnxruntime": ort.__version__, "ort_providers": ort.get_available_providers()}
    print(json.dumps(env))
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to measure")
        return 0
    rows = []
    for name, model, inputs in models():
        start = time.perf_counter()
        report = evalguard.audit(model, inputs, onnx=True, device="cuda", name=name)
        seconds = time.perf_counter() - start
        [target] = report.targets
        paired = target.facts["eval_mode"].paired if "eval_mode" in target.facts else None
        eg405 = target.coverage.get("EG405")
        row = {"model": name, "status": target.status, "seconds": round(seconds, 2),
               "findings": [(f.rule, str(f.severity), f.message[:160]) for f in report.findings],
               "not_run": {rule: c.reason for rule, c in target.not_run().items()},
               "EG405": None if eg405 is None else {"status": eg405.status, "reason": eg405.reason},
               "paired_passes": None if paired is None else paired.passes,
               "max_abs_cuda_vs_cpu": cpu_vs_cuda(model, inputs)}
        rows.append(row)
        print(f"{name:8s} {target.status:8s} {seconds:6.2f}s findings={[r for r, *_ in row['findings']]} "
              f"EG405={row['EG405']} cuda-vs-cpu={row['max_abs_cuda_vs_cpu']}")
    Path(args.out).write_text(json.dumps({"environment": env, "models": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
