"""Registry benchmark (issue 29): one mixed registry audited four ways, same findings expected.

    python bench/bench_registry.py [--copies 3] [--ray] [--keep DIR] [--extra ARGS...]

Generates, in a temporary folder, ``--copies`` sets of (11 targets each; 33 by default):
  hf-K/            a tiny BERT save_pretrained folder (built from a config, random weights)
  mlp/mlp-K.pt     a state_dict of architecture A (``--model 'registry/mlp/*=arch.py:build_mlp'``)
  cnn/cnn-K.pt     a state_dict of architecture B, BatchNorm statistics from training passes
  pair/net-K.pt    a state_dict of A next to its ONNX export net-K.onnx (one target: a pair)
  full/seq-K.pt    a full-module pickle of a torch.nn.Sequential, in eval mode
  bugs/train-K.pt  the same pickle saved in training mode (a planted EG101)
  bugs/rand-K.pt   a state_dict of a model whose forward draws random numbers after eval() (EG102)
  broken/empty-K.pt, broken/cut-K.pt (a truncated torch.save zip), broken/text-K.pt
  src/train-K.py   a copy of examples/rules/EG105/bad.py (a planted source bug)
Then audits it with local ``--jobs 1``, ``--jobs 2``, three ``--shard`` runs merged, and (with
``--ray``, when Ray is installed) ``--executor ray --jobs 2`` on a private local instance, and
prints a Markdown table: wall time, targets, errors, findings, whether the findings and target
statuses equal the ``--jobs 1`` run's, and the mean per-target wall time from the reports'
``usage`` (the per-target overhead to compare between executors).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCH = '''
import torch
from torch import nn


def build_mlp():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def build_cnn():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(x) + 0.01 * torch.randn(x.shape[0], 4)


def build_noisy():
    return Noisy()
'''
SOURCE = ROOT / "examples" / "rules" / "EG105" / "bad.py"   # functional dropout: a planted source bug


def generate(root: Path, copies: int) -> list[str]:
    import importlib.util

    import torch
    import transformers

    (root / "arch.py").write_text(ARCH)
    spec = importlib.util.spec_from_file_location("_bench_registry_arch", root / "arch.py")
    arch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arch)
    reg = root / "registry"
    for sub in ("mlp", "cnn", "pair", "full", "bugs", "broken", "src"):
        (reg / sub).mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        torch.manual_seed(k)
        config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64, max_position_embeddings=32)
        transformers.BertModel(config).eval().save_pretrained(reg / f"hf-{k}")
        torch.save(arch.build_mlp().state_dict(), reg / "mlp" / f"mlp-{k}.pt")
        cnn = arch.build_cnn().train()
        for _ in range(3):
            cnn(torch.randn(4, 3, 16, 16))
        torch.save(cnn.state_dict(), reg / "cnn" / f"cnn-{k}.pt")
        net = arch.build_mlp().eval()
        torch.save(net.state_dict(), reg / "pair" / f"net-{k}.pt")
        torch.onnx.export(net, (torch.randn(3, 8),), str(reg / "pair" / f"net-{k}.onnx"), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
        seq = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
        torch.save(seq.eval(), reg / "full" / f"seq-{k}.pt")
        torch.save(seq.train(), reg / "bugs" / f"train-{k}.pt")
        torch.save(arch.build_noisy().state_dict(), reg / "bugs" / f"rand-{k}.pt")
        (reg / "broken" / f"empty-{k}.pt").write_bytes(b"")
        whole = (reg / "mlp" / f"mlp-{k}.pt").read_bytes()
        (reg / "broken" / f"cut-{k}.pt").write_bytes(whole[: len(whole) // 2])
        (reg / "broken" / f"text-{k}.pt").write_text("not a model\n")
        shutil.copy(SOURCE, reg / "src" / f"train-{k}.py")
    return ["--model", "registry/mlp/*=arch.py:build_mlp", "--model", "registry/pair/*=arch.py:build_mlp",
            "--model", "registry/cnn/*=arch.py:build_cnn", "--model", "registry/bugs/rand-*=arch.py:build_noisy"]


def evalguard(root: Path, *args: str, python: str = sys.executable) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    proc = subprocess.run([python, "-m", "evalguard", *args], cwd=root, env=env, capture_output=True, text=True,
                          check=False)
    if proc.returncode not in (0, 1) and ("Traceback" in proc.stderr or "-o" not in args
                                          or not (root / args[args.index("-o") + 1]).exists()):
        print(proc.stderr[-3000:], file=sys.stderr)
    return proc.returncode, time.monotonic() - started


def summary(path: Path) -> dict:
    report = json.loads(path.read_text())
    findings = sorted((f["rule"], f["location"]["path"], f["location"].get("line") or 0, f["message"])
                      for f in report["findings"])
    statuses = sorted((t["path"], t["status"]) for t in report["targets"])
    seconds = [t["usage"]["seconds"] for t in report["targets"] if t.get("usage") and t["status"] == "audited"]
    return {"findings": findings, "statuses": statuses, "targets": len(statuses),
            "errors": sum(1 for _, s in statuses if s in ("error", "refused")),
            "per_target": sum(seconds) / len(seconds) if seconds else float("nan")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--ray", action="store_true", help="also run --executor ray (needs evalguard[ray])")
    parser.add_argument("--ray-python", default=sys.executable, help="the interpreter that has ray installed")
    parser.add_argument("--keep", help="generate into DIR and keep it")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `check` flags")
    args = parser.parse_args(argv)
    root = Path(args.keep or tempfile.mkdtemp(prefix="eg-bench-registry-"))
    root.mkdir(parents=True, exist_ok=True)
    flags = [*generate(root, args.copies), *args.extra]
    runs = {"local --jobs 1": ["--jobs", "1", "--isolate"], "local --jobs 2": ["--jobs", "2"]}
    rows, baseline = [], None
    for name, extra in runs.items():
        out = f"{name.split()[-1]}-{len(rows)}.json"
        code, wall = evalguard(root, "check", "registry", *flags, *extra, "--format", "json", "-o", out, "-q")
        rows.append((name, code, wall, summary(root / out)))
    shard_wall, shard_paths = 0.0, []
    for k in (1, 2, 3):
        out = f"shard-{k}.json"
        _, wall = evalguard(root, "check", "registry", *flags, "--jobs", "1", "--isolate", "--shard", f"{k}/3",
                            "--format", "json", "-o", out, "-q")
        shard_wall += wall
        shard_paths.append(out)
    code, wall = evalguard(root, "merge", *shard_paths, "--format", "json", "-o", "merged.json")
    rows.append(("3 shards + merge (sum of walls)", code, shard_wall + wall, summary(root / "merged.json")))
    if args.ray:
        code, wall = evalguard(root, "check", "registry", *flags, "--executor", "ray", "--jobs", "2",
                               "--format", "json", "-o", "ray.json", "-q", python=args.ray_python)
        if (root / "ray.json").exists():
            rows.append(("ray local --jobs 2", code, wall, summary(root / "ray.json")))
    baseline = rows[0][3]
    print(f"registry: {baseline['targets']} targets ({args.copies} copies) in {root}")
    print("| run | exit | wall s | targets | errors | findings | same as jobs 1 | mean s per audited target |")
    print("|---|---|---|---|---|---|---|---|")
    for name, code, wall, data in rows:
        same = data["findings"] == baseline["findings"] and data["statuses"] == baseline["statuses"]
        print(f"| {name} | {code} | {wall:.1f} | {data['targets']} | {data['errors']} | {len(data['findings'])} "
              f"| {'yes' if same else 'NO'} | {data['per_target']:.2f} |")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
