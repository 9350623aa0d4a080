"""Time the architecture rules on synthetic models of growing size (is it linear?).

    /work/venv/bin/python bench/bench_architecture.py [--sizes 2500,5000,10000,20000]

Each model is a Sequential of blocks (Linear, BatchNorm1d, ReLU, Dropout) plus their
containers, so ``modules`` counts every entry of ``named_modules()``. "static" is EG205-EG207
(no inputs, no forward); "copy" is the deep copy every dataflow view starts from;
"fx" and "hooks" are EG201-EG204 with each view, copy included; "run()" is the whole check
(static rules plus the fx view). Times are CPU seconds.
Runs on one thread: on a loaded machine, idle OpenMP workers make tiny CPU ops erratic.
"""
from __future__ import annotations

import argparse
import gc
import time

import torch
from torch import nn

from evalguard.checks.architecture import check as architecture
from evalguard.checks.architecture import dataflow
from evalguard.checks.architecture import flow as arch_flow
from evalguard.checks.architecture import static as arch_static
from evalguard.subject import AuditOptions, AuditSubject, ExampleInputs


def build(blocks: int) -> nn.Module:
    def block():
        return nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2))
    return nn.Sequential(*(block() for _ in range(blocks))).eval()


def timed(fn, repeats: int = 1) -> float:
    """CPU seconds of this process, best of ``repeats``: on a shared machine wall time mostly
    measures the neighbours (on an idle one, with one thread, the two agree)."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="2500,5000,10000,20000", help="approximate module counts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(4, 8)
    print(f"{'modules':>8} {'static':>8} {'static(ckpt)':>12} {'copy':>8} {'fx':>8} {'hooks':>8} {'run()':>8}"
          "   static ms per 1k modules")
    for size in (int(s) for s in args.sizes.split(",")):
        model = build(size // 5)
        modules = sum(1 for _ in model.named_modules())
        static = frozenset(arch_static.STATIC_RULES)
        flow_rules = frozenset(arch_flow.FLOW_RULES)
        t_static = timed(lambda: arch_static.findings(model, static, "m", "factory"), repeats=3)
        # As a checkpoint every BatchNorm at its initial statistics is reported: the worst case.
        t_ckpt = timed(lambda: arch_static.findings(model, static, "m", "checkpoint"), repeats=3)
        inputs = ExampleInputs(args=(x,))
        t_copy = timed(lambda: dataflow.eval_copy(model))
        t_fx = timed(lambda: arch_flow.findings(dataflow.from_fx(dataflow.eval_copy(model), inputs),
                                                flow_rules, "m"))
        t_hooks = timed(lambda: arch_flow.findings(dataflow.from_hooks(dataflow.eval_copy(model), inputs),
                                                   flow_rules, "m"))
        subject = AuditSubject(path="m", kind="factory", model=model, inputs_resolver=lambda: inputs)
        t_run = timed(lambda: architecture.run(subject, AuditOptions(selected=static | flow_rules)))
        print(f"{modules:>8} {t_static:>8.3f} {t_ckpt:>12.3f} {t_copy:>8.3f} {t_fx:>8.3f} {t_hooks:>8.3f}"
              f" {t_run:>8.3f}   {1e6 * t_static / modules:.1f}")


if __name__ == "__main__":
    main()
