"""The backend parity matrix (EG406, EG407): each deployment backend against eager PyTorch.

``--backends`` names the backends; ``onnxruntime`` is EG401's own session and needs nothing
here. Each other backend builds the eval-mode model once, runs the example inputs and a second
batch size, and is compared with eager PyTorch output by output with EG401's tolerances;
a backend that cannot build or run the model is EG407. The median latency of a few runs at both
batch sizes, eager's included, goes into the facts as evidence of what each backend costs.

- ``ort-optimized``: ONNX Runtime's default session already applies every graph optimisation
  (``ORT_ENABLE_ALL``), so this compares that session with one that applies none
  (``ORT_DISABLE_ALL``): a fusion that changes numerics shows as the optimised session failing
  where the plain one passes.
- ``torchscript``: ``torch.jit.trace`` of the flat model (a ScriptModule is run as it is).
- ``torch-compile``: ``torch.compile`` (Inductor) of the flat model.
- ``aoti``: ``torch.export`` with a dynamic batch axis, AOTInductor-compiled to a ``.pt2``
  package and loaded back.

CPU only: a CUDA build of these backends is not part of this check yet (see the rule text).
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from evalguard.checks.onnx.console import progress, quiet
from evalguard.checks.onnx.export import WRAPPED, CallSpec, FlatModel, shorten_error

ONNXRUNTIME = "onnxruntime"
#: Timed runs per backend and batch size, after WARMUP to MAX_WARMUP untimed ones.
RUNS = 5
WARMUP = 3
MAX_WARMUP = 12


@dataclass
class Built:
    """A backend ready to run: flat tensors in, flat tensors out."""

    run: Callable[[list[torch.Tensor]], list[torch.Tensor]]
    seconds: float
    plain: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None   # ort-optimized's plain session
    notes: list[str] = field(default_factory=list)


def build(name: str, flat: FlatModel, spec: CallSpec, onnx_path: str | None, workdir: str) -> Built:
    """Build one backend; raises whatever the backend raises when it cannot."""
    start = time.perf_counter()
    with progress(f"building the {name} backend"), quiet():
        run, plain, notes = _BUILDERS[name](flat, spec, onnx_path, workdir)
        run(list(spec.tensors))   # compilers build lazily: the first call is part of the build
    return Built(run, round(time.perf_counter() - start, 3), plain, notes)


def _ort_optimized(flat, spec, onnx_path, workdir):
    import onnxruntime as ort

    from evalguard.checks.onnx import runtime as onnx_runtime

    if onnx_path is None:
        raise RuntimeError("no ONNX file to run (the export failed or was not requested)")

    def make(level):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.intra_op_num_threads = onnx_runtime.thread_count()
        options.inter_op_num_threads = 1
        options.log_severity_level = 4
        session = ort.InferenceSession(onnx_path, options, providers=[onnx_runtime.CPU])

        def run(tensors):
            feed = onnx_runtime.feeds(session, spec.names, tensors)
            return [torch.from_numpy(a) for a in onnx_runtime.run(session, feed)]
        return run

    note = ("compared with a plain session (ORT_DISABLE_ALL): a fusion that changes numerics fails only "
            "in the optimised one")
    return make(ort.GraphOptimizationLevel.ORT_ENABLE_ALL), make(ort.GraphOptimizationLevel.ORT_DISABLE_ALL), [note]


def _torchscript(flat, spec, onnx_path, workdir):
    inner = getattr(flat, WRAPPED)
    if isinstance(inner, torch.jit.ScriptModule) and not spec.kwargs:
        module, notes = inner, ["the model is already a ScriptModule: run as it is"]
    else:
        module = torch.jit.trace(flat, tuple(spec.tensors), check_trace=False, strict=False)
        notes = ["torch.jit.trace: Python control flow is fixed at the example inputs"]

    def run(tensors):
        with torch.no_grad():
            out = module(*tensors)
        return [out] if isinstance(out, torch.Tensor) else list(out)
    return run, None, notes


def _torch_compile(flat, spec, onnx_path, workdir):
    import torch._dynamo

    torch._dynamo.reset()   # no cached graph of another model with the same code objects
    compiled = torch.compile(flat, backend="inductor")

    def run(tensors):
        with torch.no_grad():
            return list(compiled(*tensors))
    return run, None, ["torch.compile (Inductor); a new batch size may recompile"]


def _aoti(flat, spec, onnx_path, workdir):
    import torch._inductor

    tensors = spec.resized(2) if spec.batch() == 1 else list(spec.tensors)   # size-1 dims specialise
    shapes = tuple({0: torch.export.Dim.AUTO} if spec.batched(t) else None for t in spec.tensors)
    with torch.no_grad():
        program = torch.export.export(flat, tuple(tensors), dynamic_shapes=(shapes,), strict=False)
    package = torch._inductor.aoti_compile_and_package(program, package_path=str(Path(workdir) / "model.pt2"))
    runner = torch._inductor.aoti_load_package(package)

    def run(tensors):
        with torch.no_grad():
            out = runner(*tensors)
        return [out] if isinstance(out, torch.Tensor) else list(out)
    return run, None, ["torch.export with a dynamic batch axis, AOTInductor package"]


_BUILDERS = {"ort-optimized": _ort_optimized, "torchscript": _torchscript, "torch-compile": _torch_compile,
             "aoti": _aoti}


def median_ms(run: Callable[[], Any], runs: int = RUNS) -> float:
    """Median wall time of ``runs`` calls, in milliseconds, after a warm-up.

    The warm-up is at least ``WARMUP`` calls and goes on (up to ``MAX_WARMUP``) while the latest
    call is still far slower than the fastest: right after a build or a recompile, Inductor's
    first calls took 100-400 ms here where the steady state is 0.3 ms.
    """
    seen: list[float] = []
    while len(seen) < MAX_WARMUP:
        seen.append(_timed(run))
        if len(seen) >= WARMUP and seen[-1] <= 3 * min(seen):
            break
    times = [_timed(run) for _ in range(runs)]
    return round(statistics.median(times) * 1000, 4)


def _timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def build_error(exc: BaseException) -> str:
    return shorten_error(exc)
