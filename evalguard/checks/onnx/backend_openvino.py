"""OpenVINO backends for ``--backends`` (``pip install "evalguard[openvino]"``), CPU plugin only.

- ``openvino``: ``openvino.convert_model`` of the eval-mode model itself (OpenVINO's PyTorch frontend
  traces it with the example inputs; dimensions stay dynamic, so both batch sizes run one model).
- ``openvino-onnx``: ``openvino.convert_model`` of the exported ONNX file (or ``--onnx FILE``), the
  path a team takes when the ONNX file is the artefact it ships.

Both compile for the ``CPU`` device with ``INFERENCE_PRECISION_HINT=f32``: on CPUs with AMX or
AVX512-BF16 the plugin's default for a float32 model is bfloat16, whose errors float32 tolerances
would report on every output; the note in the backend row says what the default was here. Without
openvino installed the rows are skipped with that reason (never a finding), and with
``--device cuda`` their CUDA variants are skipped (OpenVINO has no CUDA plugin).

Measured here with openvino 2026.4.1, torch 2.13.0: see bench/RESULTS.md.
"""
from __future__ import annotations

import torch

NAMES = ("openvino", "openvino-onnx")
NOT_INSTALLED = "openvino is not installed (pip install \"evalguard[openvino]\")"
NO_CUDA = "OpenVINO has no CUDA plugin: its backends run on the CPU plugin only"


def unavailable_reason(name: str, device: str = "cpu") -> str | None:
    """Why the ``name`` backend cannot run on ``device`` here; None when it can (or is not OpenVINO's)."""
    if name not in NAMES:
        return None
    if device != "cpu":
        return NO_CUDA
    import importlib.util

    return None if importlib.util.find_spec("openvino") is not None else NOT_INSTALLED


def _compile(model, notes: list[str]):
    import openvino as ov

    from evalguard.checks.onnx.runtime import thread_count

    core = ov.Core()
    default = str(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                 "INFERENCE_NUM_THREADS": thread_count()})
    default = default.removeprefix("<Type: ").rstrip(">").strip("'")
    notes.append(f"openvino {ov.__version__.split('-')[0]}, CPU plugin, INFERENCE_PRECISION_HINT=f32 "
                 f"(this CPU's default for float32 models: {default})")
    return compiled


def _runner(compiled, names: list[str]):
    """flat CPU tensors -> the compiled model's outputs as CPU tensors, inputs matched by name when
    every model input is named after one of ours (the ONNX file's), else by position."""
    inputs = compiled.inputs
    input_names = [next(iter(i.get_names()), None) for i in inputs]
    by_name = all(n in names for n in input_names)

    def run(tensors):
        if by_name:
            ours = dict(zip(names, tensors))
            chosen = [ours[n] for n in input_names]
        else:
            chosen = list(tensors)[: len(inputs)]
        arrays = [t.detach().cpu().float().numpy() if t.dtype == torch.bfloat16 else t.detach().cpu().numpy()
                  for t in chosen]
        result = compiled(arrays)
        return [torch.from_numpy(result[output].copy()) for output in compiled.outputs]
    return run


def build_from_torch(flat, spec, onnx_path, workdir, device):
    import openvino as ov

    notes = ["openvino.convert_model of the eval-mode PyTorch model (PyTorch frontend, dynamic shapes)"]
    with torch.no_grad():
        model = ov.convert_model(flat, example_input=tuple(spec.tensors))
    return _runner(_compile(model, notes), []), None, notes


def build_from_onnx(flat, spec, onnx_path, workdir, device):
    import openvino as ov

    if onnx_path is None:
        raise RuntimeError("no ONNX file to convert (the export failed or was not requested)")
    notes = ["openvino.convert_model of the ONNX file EG401 ran"]
    return _runner(_compile(ov.convert_model(onnx_path), notes), list(spec.names)), None, notes


BUILDERS = {"openvino": build_from_torch, "openvino-onnx": build_from_onnx}
