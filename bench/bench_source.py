"""Time the source rules (EG105, EG106, EG201, EG301, EG903) on generated Python files.

    /work/venv/bin/python bench/bench_source.py [--files 700] [--keep DIR] [--budget 30]

Writes ``--files`` realistic training/serving/model files (each 100-300 lines, assembled from
the shapes the rules look at, half of them with planted bugs), then measures
1. the check functions alone (``evalguard.checks.source.run`` on every file, in-process), next
   to ``ast.parse`` of the same files (the floor for any AST-based check; on a shared machine the
   ratio is steadier than the absolute time), best of ``--repeats``, and
2. the whole command, ``evalguard check DIR --format json``, in a fresh process (start-up,
   directory walk, suppression handling and the JSON report included), and checks that this
   process never imported torch.
Prints files/s and lines/s and the finding counts per rule (which must match what was planted).

    /work/venv/bin/python bench/bench_source.py --scaling [--sizes 250,500,1000,2000] [--repeats 3]

instead times the whole command on trees of each size with ``--jobs 1`` and ``--jobs 2``
(interleaved, median of ``--repeats``): wall seconds, CPU seconds of the command and its worker
processes, cores used (CPU / wall) and milliseconds per file, as a Markdown table. It fails when
the two worker counts give different JSON reports (the ``command`` line aside), when a run
misses a planted bug, or when the command imported torch.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

HEADER = """\
import math
import os
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Adam, AdamW
"""

BLOCKS = {
    "model": ("""\
class Block{i}(nn.Module):
    def __init__(self, dim: int = {dim}, p: float = {p}):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * 4)
        self.fc2 = nn.Linear(dim * 4, dim)
        self.norm = nn.LayerNorm(dim)
        self.p = p
        self.head = nn.Sequential(nn.Linear(dim, dim), {seq})

    def forward(self, x):
        h = F.gelu(self.fc1(self.norm(x)))
        h = {dropout}
        q = k = v = h.view(h.shape[0], 1, -1, 4)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p={sdpa})
        return x + self.fc2(a.flatten(1)) + self.head(x)
""", {"EG105", "EG201"}),
    "optim": ("""\
def build_optimizer{i}(model, lr: float = {lr}):
    no_decay = ["bias", "LayerNorm.weight"]
    groups = [
        {{"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)],
          "weight_decay": {wd}}},
        {{"params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)],
          "weight_decay": 0.0}},
    ]
    return {opt}(groups, lr=lr)
""", {"EG301"}),
    "serve": ("""\
def load_model{i}(path: str):
    model = Block{i}()
    model.load_state_dict(torch.load(path, map_location="cpu"{unsafe}))
    return model{eval}


def predict{i}(model, batch):
    with torch.no_grad():
        return model(batch).softmax(-1)


def main{i}():
    model = load_model{i}("weights{i}.pt")
    print(predict{i}(model, torch.randn(4, {dim})))
""", {"EG106", "EG903"}),
    "train": ("""\
def train{i}(model, loader, epochs: int = {epochs}):
    optimizer = build_optimizer{i}(model)
    for epoch in range(epochs):
        model.train()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = sum((model(x).argmax(-1) == y).sum().item() for x, y in loader)
        print(f"epoch {{epoch}}: {{correct}}")
""", set()),
    "utils": ("""\
def cosine_schedule{i}(step: int, total: int, base: float = {lr}) -> float:
    return base * 0.5 * (1 + math.cos(math.pi * step / total))


def count_parameters{i}(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


CONFIG{i} = OrderedDict(lr={lr}, weight_decay={wd}, epochs={epochs}, dim={dim})
""", set()),
}


def make_file(rng: random.Random, index: int) -> tuple[str, Counter]:
    """One file of several blocks; returns its text and the findings planted in it."""
    bad = index % 2 == 0
    planted: Counter = Counter()
    parts = [HEADER]
    for i in range(rng.randint(2, 4)):
        values = {"i": i, "dim": rng.choice((16, 32, 64)), "p": rng.choice((0.1, 0.2)), "lr": rng.choice((1e-3, 3e-4)),
                  "wd": rng.choice((0.01, 0.05)), "epochs": rng.randint(2, 20)}
        flip = lambda: bad and rng.random() < 0.5  # noqa: E731
        drop_bad, seq_bad, sdpa_bad, opt_bad, eval_bad, unsafe_bad = (flip() for _ in range(6))
        values.update(
            dropout="F.dropout(h, self.p)" if drop_bad else "F.dropout(h, self.p, self.training)",
            seq="nn.Dropout(0.1), nn.BatchNorm1d(dim)" if seq_bad else "nn.BatchNorm1d(dim), nn.ReLU()",
            sdpa="self.p" if sdpa_bad else "self.p if self.training else 0.0",
            opt="Adam" if opt_bad else "AdamW",
            eval="" if eval_bad else ".eval()",
            unsafe=", weights_only=False" if unsafe_bad else "",
        )
        planted.update({"EG105": drop_bad + sdpa_bad, "EG201": seq_bad, "EG301": opt_bad,
                        "EG106": eval_bad, "EG903": unsafe_bad})
        for name in ("model", "optim", "serve", "train", "utils"):
            parts.append(BLOCKS[name][0].format(**values))
    return "\n\n".join(parts), +planted


#: The corpus is a project that requires torch >= 2.6, so a bare ``torch.load(path)`` is safe (EG903
#: reports it only where torch < 2.6 is allowed) and the planted counts stay exact.
PYPROJECT = '[project]\nname = "bench-corpus"\ndependencies = ["torch>=2.6"]\n'


def write_corpus(folder: Path, count: int, seed: int = 0) -> tuple[int, Counter]:
    rng = random.Random(seed)
    lines, planted = 0, Counter()
    (folder / "pyproject.toml").write_text(PYPROJECT)
    for index in range(count):
        text, expected = make_file(rng, index)
        sub = folder / f"pkg{index // 100:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"module_{index:04d}.py").write_text(text)
        lines += text.count("\n") + 1
        planted.update(expected)
    return lines, planted


def time_checks(folder: Path, repeats: int) -> tuple[float, float, Counter, int]:
    """(best seconds for the checks, best seconds for ast.parse alone, findings, files)."""
    import ast

    from evalguard.checks.source.check import run
    from evalguard.subject import AuditOptions, AuditSubject

    options = AuditOptions(selected=frozenset({"EG105", "EG106", "EG201", "EG301", "EG903"}))
    files = [(str(p), p.read_text()) for p in sorted(folder.rglob("*.py"))]
    best_checks = best_parse = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for path, text in files:
            ast.parse(text, filename=path)
        best_parse = min(best_parse, time.perf_counter() - start)
        counts: Counter = Counter()
        start = time.perf_counter()
        for path, text in files:
            subject = AuditSubject(path=path, kind="python-source", source_text=text)
            counts.update(f.rule for f in run(subject, options).findings)
        best_checks = min(best_checks, time.perf_counter() - start)
    return best_checks, best_parse, counts, len(files)


CLI_PROBE = textwrap.dedent("""\
    import json, sys, time
    start = time.perf_counter()
    from evalguard.cli import main
    try:
        main(["check", sys.argv[1], "--format", "json", "--output", sys.argv[2], *sys.argv[3:]])
    except SystemExit:
        pass
    print(json.dumps({"seconds": time.perf_counter() - start, "torch_imported": "torch" in sys.modules}))
    """)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_cli(folder: Path, jobs: int | None = None) -> dict:
    """One ``evalguard check FOLDER --format json`` in a fresh process; its CPU seconds include
    the worker processes it forked (they are waited for, so the kernel adds them up)."""
    report = folder.parent / f"report-{jobs}.json"
    extra = ["--jobs", str(jobs)] if jobs else []
    cpu, start = _children_cpu(), time.perf_counter()
    result = subprocess.run([sys.executable, "-c", CLI_PROBE, str(folder), str(report), *extra],
                            capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if result.returncode != 0:
        raise SystemExit(f"evalguard check failed:\n{result.stderr[-2000:]}")
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    data = json.loads(report.read_text())
    data["run"].pop("command")
    return {"wall": wall, "cpu": cpu, "in_process": probe["seconds"], "torch_imported": probe["torch_imported"],
            "targets": len(data["targets"]), "findings": Counter(f["rule"] for f in data["findings"]),
            "report": json.dumps(data, sort_keys=True)}


def scaling(sizes: list[int], repeats: int, workers=(1, 2)) -> None:
    """The whole command on growing trees with 1 and 2 workers, interleaved; median of ``repeats``."""
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory() as tmp:
        corpora = {}
        for size in sizes:
            folder = Path(tmp) / f"corpus{size}"
            folder.mkdir()
            corpora[size] = (folder, *write_corpus(folder, size))
        runs: dict[tuple[int, int], list[dict]] = {}
        for _ in range(repeats):
            for size in sizes:
                for jobs in workers:
                    runs.setdefault((size, jobs), []).append(time_cli(corpora[size][0], jobs))
        print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
        print("| files | lines | workers | wall s | CPU s | cores used | ms per file |")
        print("|---|---|---|---|---|---|---|")
        failures = []
        for size in sizes:
            folder, lines, planted = corpora[size]
            for jobs in workers:
                done = runs[(size, jobs)]
                wall = statistics.median(r["wall"] for r in done)
                cpu = statistics.median(r["cpu"] for r in done)
                print(f"| {size:,} | {lines:,} | {jobs} | {wall:.2f} | {cpu:.2f} | {cpu / wall:.2f} | "
                      f"{1000 * wall / size:.2f} |")
                failures += [f"{size} files, {jobs} workers: findings differ from the planted bugs"
                             for r in done if r["findings"] != planted]
                failures += [f"{size} files, {jobs} workers: torch imported" for r in done if r["torch_imported"]]
            reports = {r["report"] for jobs in workers for r in runs[(size, jobs)]}
            if len(reports) != 1:
                failures.append(f"{size} files: the JSON reports differ between runs")
        print("\nresult: " + ("; ".join(failures) if failures else
                               "every run found the planted bugs; reports identical for every worker count; "
                               "no torch"))
        if failures:
            raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=700, help="700 files are about 150,000 lines")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds the whole command may take")
    parser.add_argument("--keep", type=Path, help="write the corpus here and keep it")
    parser.add_argument("--repeats", type=int, default=3, help="in-process timings: best of N; --scaling: median")
    parser.add_argument("--scaling", action="store_true", help="time the command at --sizes with 1 and 2 workers")
    parser.add_argument("--sizes", default="250,500,1000,2000", help="--scaling: tree sizes in files")
    args = parser.parse_args()
    if args.scaling:
        scaling([int(n) for n in args.sizes.split(",")], args.repeats)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp) / "corpus"
        folder.mkdir(parents=True, exist_ok=True)
        lines, planted = write_corpus(folder, args.files)
        seconds, parse_seconds, counts, files = time_checks(folder, args.repeats)
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print(f"corpus: {files} files, {lines} lines; planted {dict(sorted(planted.items()))}")
        print(f"checks: {seconds:.2f} s  ({files / seconds:.0f} files/s, {lines / seconds:.0f} lines/s; "
              f"ast.parse alone {parse_seconds:.2f} s, so {seconds / parse_seconds:.1f}x parsing); "
              f"found {dict(sorted(counts.items()))}")
        cli = time_cli(folder)
        print(f"cli:    {cli['wall']:.2f} s wall for `evalguard check DIR --format json` "
              f"({cli['targets']} targets, {cli['in_process']:.2f} s after interpreter start); "
              f"torch imported: {cli['torch_imported']}")
        within = cli["wall"] <= args.budget
        print(f"budget: {cli['wall']:.1f} s of {args.budget:.0f} s for {lines} lines ({'ok' if within else 'OVER'}; "
              "on a loaded machine compare the ratio to ast.parse above)")
        ok = counts == planted and cli["findings"] == planted and not cli["torch_imported"]
        print("result: " + ("findings match the planted bugs" if ok else "MISMATCH"))
        if not ok:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
