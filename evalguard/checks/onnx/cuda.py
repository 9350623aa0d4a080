"""EG405: ONNX Runtime's CUDA provider against its CPU provider and against PyTorch on CUDA.

TF32 is switched off on both sides for the comparison (ORT's ``use_tf32`` provider option,
torch's exact kernels from checks/running.py): TF32 rounds matmul inputs to a 10-bit mantissa, whose error
would drown the provider bugs this rule looks for. The device-independent parts (why the
check cannot run, the verdict from the comparison rows) are plain functions so they can be
tested on machines without a GPU.
"""
from __future__ import annotations

import copy

import torch

from evalguard.checks.onnx import compare as onnx_compare
from evalguard.checks.onnx import runtime as onnx_runtime
from evalguard.checks.onnx.export import CallSpec, reference
from evalguard.checks.running import exact_kernels

CPU_VS_CUDA = "onnxruntime-cuda vs onnxruntime-cpu"
TORCH_CUDA = "onnxruntime-cuda vs torch-cuda"


def unavailable_reason(device: str, *, onnxruntime: bool = True) -> str | None:
    """Why the CUDA comparison cannot run here, or None when it can. With ``onnxruntime=False``
    only PyTorch's side counts (the CUDA variants of torch.compile, AOTInductor, TorchScript)."""
    if device != "cuda":
        return f"--device is {device!r}"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to PyTorch (torch.cuda.is_available() is False)"
    if not onnxruntime:
        return None
    import onnxruntime as ort

    if onnx_runtime.CUDA not in ort.get_available_providers():
        return ("onnxruntime has no CUDAExecutionProvider (available: "
                f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu")
    return None


def cuda_session(path: str):
    """A session on the CUDA provider; raises when ORT silently fell back to the CPU."""
    providers = [(onnx_runtime.CUDA, {"use_tf32": 0}), onnx_runtime.CPU]
    sess = onnx_runtime.session(path, providers, label=" (CUDA)")
    if sess.get_providers()[0] != onnx_runtime.CUDA:
        raise RuntimeError(f"onnxruntime did not enable the CUDA provider (got {sess.get_providers()})")
    return sess


def on_cuda(eval_model):
    """A copy of the eval-mode model on the GPU (the model itself stays where it is)."""
    return copy.deepcopy(eval_model).to("cuda")


def torch_cuda_outputs(cuda_model, spec: CallSpec, tensors=None) -> list[tuple[str, torch.Tensor]]:
    """Eval-mode PyTorch on the GPU (``on_cuda``) on the example inputs or ``tensors``, with
    exact kernels, back on the CPU for comparison."""
    tensors = [t.to("cuda") for t in (spec.tensors if tensors is None else tensors)]
    with exact_kernels("cuda"):
        leaves = reference(cuda_model, spec, tensors)
    return [(name, t.cpu()) for name, t in leaves]


def compare_rows(names: list[str], onnx_names: list[str], ort_cuda: list, ort_cpu: list,
                 torch_cuda: list[torch.Tensor] | None, overrides, batch: int | None) -> list[dict]:
    """Parity rows for ORT-CUDA vs ORT-CPU and, when given, vs PyTorch on CUDA."""
    rows = []
    for name, onnx_name, cuda_out, cpu_out in zip(names, onnx_names, ort_cuda, ort_cpu):
        rows.append(onnx_compare.row(name, onnx_name, cuda_out, torch.as_tensor(cpu_out), overrides,
                                     comparison=CPU_VS_CUDA, batch=batch, histogram=False))
    if torch_cuda is not None:
        for name, onnx_name, cuda_out, expected in zip(names, onnx_names, ort_cuda, torch_cuda):
            rows.append(onnx_compare.row(name, onnx_name, cuda_out, expected, overrides,
                                         comparison=TORCH_CUDA, batch=batch, histogram=False))
    return rows


def verdict(rows: list[dict], cpu_parity_ok: bool) -> str | None:
    """The EG405 message, or None. ORT-CUDA disagreeing with ORT-CPU on the same file is
    always the provider's doing; disagreeing with PyTorch-CUDA only counts when the CPU
    provider agreed with PyTorch (otherwise EG401 already explains it)."""
    vs_cpu = [r for r in onnx_compare.failing(rows) if r["comparison"] == CPU_VS_CUDA]
    vs_torch = [r for r in onnx_compare.failing(rows) if r["comparison"] == TORCH_CUDA]
    if vs_cpu:
        return ("ONNX Runtime's CUDA provider disagrees with its CPU provider on the same file: "
                + "; ".join(onnx_compare.describe_failure(r) for r in vs_cpu[:3]))
    if vs_torch and cpu_parity_ok:
        return ("ONNX Runtime's CUDA provider disagrees with PyTorch on CUDA although the CPU "
                "provider matches PyTorch: " + "; ".join(onnx_compare.describe_failure(r) for r in vs_torch[:3]))
    return None
