"""The paired-forward checks (EG101-EG104, EG107) alone against one eval forward pass.

    python bench/bench_dynamic.py [threads]

Target (issue 4): at most load + 4 forward passes + the copy. Best of 3 per measurement.
"""
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import BertConfig, BertModel, ResNetConfig, ResNetModel

from evalguard.checks.eval_mode.check import run
from evalguard.subject import AuditOptions, AuditSubject, ExampleInputs

SELECTED = frozenset({"EG101", "EG102", "EG103", "EG104", "EG107"})


def best_of(fn, repeat=3):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def bench(name, model, inputs, train=False):
    model.eval()
    with torch.no_grad():
        model(**inputs)  # warm-up

    def forward():
        with torch.no_grad():
            return model(**inputs)

    t_forward, _ = best_of(forward)
    model.train(train)

    def audit():
        subject = AuditSubject(path=name, kind="factory", model=model,
                               inputs_resolver=lambda: ExampleInputs(kwargs=inputs))
        return subject, [f.rule for f in run(subject, AuditOptions(selected=SELECTED))]

    t_audit, (subject, rules) = best_of(audit)
    passes = subject.info.get("paired_forward", {}).get("passes")
    print(f"| {name} | {t_forward:.3f} | {t_audit:.3f} | {t_audit / t_forward:.1f} | {passes} | {', '.join(rules) or '-'} |")


def main():
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    g = torch.Generator().manual_seed(0)
    image = {"pixel_values": torch.randn(2, 3, 224, 224, generator=g)}
    text = {"input_ids": torch.randint(0, 30522, (2, 128), generator=g)}
    print("| model (batch 2) | one eval forward s | dynamic checks s | ratio | passes | findings |")
    print("|---|---|---|---|---|---|")
    torch.manual_seed(0)
    bench("ResNet-50, served in eval", ResNetModel(ResNetConfig()), image)
    bench("ResNet-50, served in train", ResNetModel(ResNetConfig()), image, train=True)
    bench("BERT-base seq 128, served in eval", BertModel(BertConfig()), text)
    bench("BERT-base seq 128, served in train", BertModel(BertConfig()), text, train=True)


if __name__ == "__main__":
    main()
