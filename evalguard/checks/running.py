"""Save and put back the train/eval flags of a module tree.

Checks that run a model in place (one the audit loaded itself) switch its mode; these put
every module's flag back, so later checks see the model as it was loaded.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator


def mode_flags(model) -> dict[str, bool]:
    return {name: module.training for name, module in model.named_modules()}


def restore_mode_flags(model, flags: dict[str, bool]) -> None:
    if getattr(model, "evalguard_switchable", False):   # an exported graph: its ops carry the mode
        model.train(flags.get("", True))
    for name, module in model.named_modules():
        if name in flags:
            module.training = flags[name]


@contextlib.contextmanager
def in_eval_mode(model) -> Iterator:
    """``model`` itself in eval mode; every module's flag is put back on exit."""
    flags = mode_flags(model)
    model.eval()
    try:
        yield model
    finally:
        restore_mode_flags(model, flags)


@contextlib.contextmanager
def exact_kernels(device: str) -> Iterator[None]:
    """On CUDA, run without TF32 (matmul and cuDNN) and without cuDNN's autotuner.

    The rules compare passes with each other (same input twice; rows alone against the batch;
    PyTorch on CUDA against ONNX Runtime's CUDA provider for EG405).
    TF32 rounds matmul and convolution inputs to a 10-bit mantissa, and cuBLAS/cuDNN pick
    different algorithms for different batch sizes, so with TF32 on, a clean model's rows differ
    between batch sizes by far more than float32 rounding: that read as batch dependence (EG104)
    on a real GPU. The caller's settings are put back afterwards. Nothing changes on the CPU.
    """
    if not str(device).startswith("cuda"):
        yield
        return
    import torch

    backends = torch.backends
    saved = (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.benchmark,
             backends.cudnn.deterministic)
    backends.cuda.matmul.allow_tf32 = backends.cudnn.allow_tf32 = False
    backends.cudnn.benchmark, backends.cudnn.deterministic = False, True
    try:
        yield
    finally:
        (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.benchmark,
         backends.cudnn.deterministic) = saved
