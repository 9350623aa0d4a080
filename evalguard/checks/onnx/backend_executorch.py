"""``executorch`` in ``--backends`` (``pip install "evalguard[executorch]"``): the eval-mode model
captured with ``torch.export`` (batch axis dynamic up to the larger of the two compared batch sizes),
lowered with ``to_edge_transform_and_lower`` to ExecuTorch's XNNPACK CPU delegate, serialised to a
``.pte`` program and run with ExecuTorch's own runtime (``executorch.runtime``), compared with eager
PyTorch with EG401's tolerances. Skipped with the reason when executorch is not installed; no CUDA
variant (XNNPACK is a CPU delegate).
"""
from __future__ import annotations

from pathlib import Path

import torch

NAME = "executorch"
NOT_INSTALLED = "executorch is not installed (pip install \"evalguard[executorch]\")"
CPU_ONLY = "ExecuTorch's XNNPACK delegate runs on the CPU only (no CUDA variant)"


def unavailable_reason(name: str, device: str = "cpu") -> str | None:
    if name != NAME:
        return None
    if device != "cpu":
        return CPU_ONLY
    import importlib.util

    # find_spec, not an import: importing executorch pulls in torchao, which prints while loading
    return None if importlib.util.find_spec("executorch") is not None else NOT_INSTALLED


def build(flat, spec, onnx_path, workdir, device):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    batch = spec.batch()
    tensors = list(spec.tensors)
    if batch is not None:
        top = max(batch, 2)
        if batch == 1:
            tensors = spec.resized(2)   # a size-1 example dimension would be specialised
        dim = torch.export.Dim("batch", min=1, max=top)
        shapes = tuple({0: dim} if spec.batched(t) else None for t in spec.tensors)
    else:
        shapes = None
    with torch.no_grad():
        program = torch.export.export(flat, tuple(tensors), dynamic_shapes=(shapes,) if shapes else None,
                                      strict=False)
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    path = Path(workdir) / "model.pte"
    path.write_bytes(lowered.buffer)
    method = Runtime.get().load_program(str(path)).load_method("forward")

    def run(inputs):
        out = method.execute([t.detach().cpu().contiguous() for t in inputs])
        return [t.clone() if isinstance(t, torch.Tensor) else torch.as_tensor(t) for t in out]
    notes = ["torch.export (dynamic batch axis, bounded) -> to_edge_transform_and_lower(XnnpackPartitioner) "
             "-> .pte run with executorch.runtime"]
    return run, None, notes
