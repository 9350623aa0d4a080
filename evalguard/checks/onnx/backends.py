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

With ``--device cuda`` every backend also gets a CUDA variant: the eval-mode model moved to the
GPU, built there (``ort-optimized``: both sessions on ONNX Runtime's CUDA provider, TF32 off) and
compared with eager PyTorch on CUDA, all under ``checks/running.exact_kernels`` (no TF32, no cuDNN
autotuning), with the same per-dtype tolerances. A variant that cannot run here (no GPU visible to
PyTorch; for ``ort-optimized`` also an onnxruntime without the CUDA provider) is a ``skipped`` row
with the reason, and the rules' coverage says skipped with that reason: never passed, never a
finding. The choice of variants, the skip reasons and the verdicts are plain functions below, so
they are tested on machines without a GPU.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from evalguard.checks.onnx import backend_executorch, backend_int8, backend_openvino
from evalguard.checks.onnx import compare as onnx_compare
from evalguard.checks.onnx.console import progress, quiet
from evalguard.checks.onnx.export import WRAPPED, CallSpec, FlatModel, shorten_error
from evalguard.checks.running import exact_kernels

ONNXRUNTIME = "onnxruntime"
CPU, CUDA = "cpu", "cuda"
#: Backends whose CUDA variant runs on ONNX Runtime's CUDA provider (the rest on PyTorch's CUDA).
ORT_BACKENDS = frozenset({"ort-optimized"})
#: BackendFact.status values.
MATCHES, DIFFERS, FILE_DIFFERS, BUILD_FAILED, RUN_FAILED, SKIPPED = (
    "matches", "differs", "file differs (EG401)", "build failed", "run failed", "skipped")
#: Timed runs per backend and batch size, after WARMUP to MAX_WARMUP untimed ones.
RUNS = 5
WARMUP = 3
MAX_WARMUP = 12


@dataclass(frozen=True)
class Variant:
    """One backend on one device; ``skip_reason`` when it cannot run here."""

    backend: str
    device: str = CPU
    skip_reason: str | None = None

    @property
    def label(self) -> str:
        return self.backend if self.device == CPU else f"{self.backend} ({self.device})"


def variants(wanted: list[str], device: str, torch_reason: str | None = None,
             ort_reason: str | None = None) -> list[Variant]:
    """The CPU variant of every wanted backend and, with ``--device cuda``, a CUDA variant of each
    after them. ``torch_reason`` says why PyTorch cannot use a GPU here, ``ort_reason`` why ONNX
    Runtime's CUDA provider cannot (``cuda.unavailable_reason``); each skips the variants that need it."""
    plan = [Variant(name, CPU, _optional_reason(name, CPU)) for name in wanted]
    if device == CUDA:
        plan += [Variant(name, CUDA, _optional_reason(name, CUDA) or torch_reason
                         or (ort_reason if name in ORT_BACKENDS else None))
                 for name in wanted]
    return plan


def _optional_reason(name: str, device: str) -> str | None:
    """Why an optional backend (OpenVINO, ort-int8, ExecuTorch) cannot run on ``device`` here, else None."""
    return (backend_openvino.unavailable_reason(name, device) or backend_int8.unavailable_reason(name, device)
            or backend_executorch.unavailable_reason(name, device))


def coverage_gap(table) -> str | None:
    """Why the backend rules cannot count as passed: the variants of the table (BackendFact rows)
    that were skipped, grouped by reason; None when every asked-for variant ran."""
    by_reason: dict[str, list[str]] = {}
    for fact in table:
        if fact.status == SKIPPED:
            label = fact.backend if fact.device == CPU else f"{fact.backend} ({fact.device})"
            by_reason.setdefault(fact.skip_reason or "no reason given", []).append(label)
    if not by_reason:
        return None
    return "; ".join(f"{', '.join(labels)} not run: {reason}" for reason, labels in by_reason.items()) + (
        " (the other backends ran: see the backend table)")


def verdict(rows: list[dict], plain_rows: list[dict], run_failed: bool) -> tuple[str, list[dict]]:
    """A built backend's status and the failing rows it is to blame for (EG406).

    With ``plain_rows`` (ort-optimized: the same file without graph optimisations), only what
    fails in the optimised session alone is the backend's: a failure in both is the file's (EG401).
    """
    if run_failed:
        return RUN_FAILED, []
    bad = onnx_compare.failing(rows)
    if plain_rows:
        plain_bad = {(r["output"], r["batch"]) for r in onnx_compare.failing(plain_rows)}
        blamed = [r for r in bad if (r["output"], r["batch"]) not in plain_bad]
        if bad and not blamed:
            return FILE_DIFFERS, []
        bad = blamed
    return (DIFFERS, bad) if bad else (MATCHES, [])


@dataclass
class Built:
    """A backend ready to run: flat tensors in, flat tensors out."""

    run: Callable[[list[torch.Tensor]], list[torch.Tensor]]
    seconds: float
    plain: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None   # ort-optimized's plain session
    notes: list[str] = field(default_factory=list)
    #: re-judges a parity row against another standard (ort-int8: its quantization budget)
    judge: Callable[[dict, torch.Tensor, torch.Tensor], dict] | None = None


def build(name: str, flat: FlatModel, spec: CallSpec, onnx_path: str | None, workdir: str,
          device: str = CPU) -> Built:
    """Build one backend for ``device`` (``flat`` wraps the model already on it); raises whatever
    the backend raises when it cannot. The built backend takes and returns CPU tensors."""
    start = time.perf_counter()
    label = Variant(name, device).label
    with progress(f"building the {label} backend"), quiet(), exact_kernels(device):
        run, plain, notes = _BUILDERS[name](flat, spec, onnx_path, workdir, device)
        run(list(spec.tensors))   # compilers build lazily: the first call is part of the build
    return Built(run, round(time.perf_counter() - start, 3), plain, notes, _JUDGES.get(name))


def _to(device: str, tensors) -> list[torch.Tensor]:
    return [t.to(device) for t in tensors]


def _outputs(out) -> list[torch.Tensor]:
    """A backend's outputs as a list of CPU tensors (``.cpu()`` also waits for the GPU)."""
    return [t.cpu() for t in ([out] if isinstance(out, torch.Tensor) else out)]


def _ort_optimized(flat, spec, onnx_path, workdir, device):
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
        if device == CUDA:   # TF32 off, as for EG405
            providers = [(onnx_runtime.CUDA, {"use_tf32": 0}), onnx_runtime.CPU]
        else:
            providers = [onnx_runtime.CPU]
        session = ort.InferenceSession(onnx_path, options, providers=providers)
        if device == CUDA and session.get_providers()[0] != onnx_runtime.CUDA:
            raise RuntimeError(f"onnxruntime did not enable the CUDA provider (got {session.get_providers()})")

        def run(tensors):
            feed = onnx_runtime.feeds(session, spec.names, tensors)
            return [torch.from_numpy(a) for a in onnx_runtime.run(session, feed)]
        return run

    note = ("compared with a plain session (ORT_DISABLE_ALL): a fusion that changes numerics fails only "
            "in the optimised one")
    return make(ort.GraphOptimizationLevel.ORT_ENABLE_ALL), make(ort.GraphOptimizationLevel.ORT_DISABLE_ALL), [note]


def _torchscript(flat, spec, onnx_path, workdir, device):
    inner = getattr(flat, WRAPPED)
    if isinstance(inner, torch.jit.ScriptModule) and not spec.kwargs:
        module, notes = inner, ["the model is already a ScriptModule: run as it is"]
    else:
        module = torch.jit.trace(flat, tuple(_to(device, spec.tensors)), check_trace=False, strict=False)
        notes = ["torch.jit.trace: Python control flow is fixed at the example inputs"]

    def run(tensors):
        with torch.no_grad():
            return _outputs(module(*_to(device, tensors)))
    return run, None, notes


def _torch_compile(flat, spec, onnx_path, workdir, device):
    import torch._dynamo

    torch._dynamo.reset()   # no cached graph of another model with the same code objects
    compiled = torch.compile(flat, backend="inductor")

    def run(tensors):
        with torch.no_grad():
            return _outputs(compiled(*_to(device, tensors)))
    return run, None, ["torch.compile (Inductor); a new batch size may recompile"]


def _aoti(flat, spec, onnx_path, workdir, device):
    import torch._inductor

    tensors = spec.resized(2) if spec.batch() == 1 else list(spec.tensors)   # size-1 dims specialise
    shapes = tuple({0: torch.export.Dim.AUTO} if spec.batched(t) else None for t in spec.tensors)
    with torch.no_grad():
        program = torch.export.export(flat, tuple(_to(device, tensors)), dynamic_shapes=(shapes,), strict=False)
    package = torch._inductor.aoti_compile_and_package(
        program, package_path=str(Path(workdir) / f"model-{device}.pt2"))
    runner = torch._inductor.aoti_load_package(package)

    def run(tensors):
        with torch.no_grad():
            return _outputs(runner(*_to(device, tensors)))
    return run, None, ["torch.export with a dynamic batch axis, AOTInductor package"]


_BUILDERS = {"ort-optimized": _ort_optimized, "torchscript": _torchscript, "torch-compile": _torch_compile,
             "aoti": _aoti, **backend_openvino.BUILDERS, backend_int8.NAME: backend_int8.build,
             backend_executorch.NAME: backend_executorch.build}
_JUDGES = {backend_int8.NAME: backend_int8.judge}


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
