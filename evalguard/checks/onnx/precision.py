"""bfloat16 models and ONNX: the export and the PyTorch reference are computed in float32.

ONNX Runtime's CPU provider has no bfloat16 kernels for most ops (``Mul``, ``MatMul``, ...), and
the TorchScript exporter cannot trace some bfloat16 models at all, so a bfloat16 model exported
as it is can never be run, and EG401/EG404 would fail on every bfloat16 model. The ONNX check
therefore converts the model's bfloat16 parameters and buffers to float32 in place for its own
steps (export, reference passes, ONNX Runtime), compares with the float32 tolerances, and puts
the tensors back to bfloat16 afterwards. This checks what the export does to the model's graph
and weights (stale files, export-only ops, training-mode ops, batch-size constants); it does not
measure bfloat16 rounding, which the paired passes judge with bfloat16 tolerances. float16 models
run as they are (ONNX Runtime CPU has float16 kernels) with the float16 tolerances of
``compare.DEFAULT_TOLERANCES``.

float16 and the TorchScript exporter: for some float16 models (GPT-2's LayerNorm) the TorchScript
exporter writes a graph that binds one op's type parameter to float and float16 at once, which
ONNX Runtime refuses to load. evalguard's own export validates the file by loading it and then
falls back to the dynamo exporter, whose float16 graph loads (so the float16 model is exported
and compared in float16, not upcast). A user's ``--onnx`` file with that defect is reported as
unloadable (EG401) with ``load_hint`` naming the cause and the fix.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from evalguard.subject import ExampleInputs

NOTE = ("bfloat16 model: ONNX Runtime's CPU provider has no bfloat16 kernels, so the export and the "
        "PyTorch reference ran on the model converted to float32 in place (float32 tolerances); "
        "its tensors were put back to bfloat16 afterwards")


def has_bfloat16(model) -> bool:
    if not isinstance(model, torch.nn.Module):
        return False
    return any(t.dtype == torch.bfloat16 for t in (*model.parameters(), *model.buffers()))


def _bfloat16_names(model: torch.nn.Module) -> tuple[list[str], list[str]]:
    params = [n for n, p in model.named_parameters(remove_duplicate=False) if p.dtype == torch.bfloat16]
    buffers = [n for n, b in model.named_buffers(remove_duplicate=False) if b.dtype == torch.bfloat16]
    return params, buffers


def _set_dtype(model: torch.nn.Module, params: list[str], buffers: list[str], dtype: torch.dtype) -> None:
    """One tensor at a time, so the peak is one tensor more than the model, not a second model."""
    seen: set[int] = set()
    for name in params:
        param = model.get_parameter(name)
        if id(param) not in seen:          # tied weights are one Parameter: convert once
            seen.add(id(param))
            param.data = param.data.to(dtype)
    for name in buffers:
        prefix, _, leaf = name.rpartition(".")
        module = model.get_submodule(prefix)
        module._buffers[leaf] = module._buffers[leaf].to(dtype)


@contextmanager
def float32_reference(model) -> Iterator[bool]:
    """Inside: ``model``'s bfloat16 tensors as float32 (yields True), or nothing changed (False)."""
    if not has_bfloat16(model):
        yield False
        return
    params, buffers = _bfloat16_names(model)
    _set_dtype(model, params, buffers, torch.float32)
    try:
        yield True
    finally:
        _set_dtype(model, params, buffers, torch.bfloat16)


def _up(value):
    return value.float() if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16 else value


def float32_inputs(inputs: ExampleInputs) -> ExampleInputs:
    """bfloat16 tensors of the example inputs as float32 (integer token ids stay as they are)."""
    return ExampleInputs(tuple(_up(v) for v in inputs.args), {k: _up(v) for k, v in inputs.kwargs.items()},
                         inputs.source)


def float32_tensors(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The same for a flat list of input tensors."""
    return [_up(t) for t in tensors]


def load_hint(model, error: str) -> str:
    """Why ONNX Runtime may refuse a float16 model's file, when the error is a type clash."""
    if not isinstance(model, torch.nn.Module) or "Type Error" not in error \
            or not any(p.dtype == torch.float16 for p in model.parameters()):
        return ""
    return ("; the model is float16, and the TorchScript exporter (torch.onnx.export(..., dynamo=False)) "
            "can bind one op's inputs to float and float16 at once, which ONNX Runtime refuses: re-export "
            "with dynamo=True (evalguard's own export falls back to it)")


def dynamic_quantized(model) -> str | None:
    """The first module made by ``torch.ao.quantization.quantize_dynamic``, as ``name (Type)``."""
    if not isinstance(model, torch.nn.Module):
        return None
    for name, module in model.named_modules():
        if is_dynamic_quantized(module):
            return f"{name or '(root)'} ({type(module).__name__})"
    return None


_DYNAMIC = ("torch.ao.nn.quantized.dynamic", "torch.nn.quantized.dynamic")


def is_dynamic_quantized(module) -> bool:
    """A ``quantize_dynamic`` module, eager or TorchScript (a traced/scripted module keeps the
    qualified name of the class it was made from: ``__torch__.torch.ao.nn.quantized.dynamic...``)."""
    if type(module).__module__.startswith(_DYNAMIC):
        return True
    script_type = getattr(getattr(module, "_c", None), "_type", None)
    if script_type is None:
        return False
    try:
        qualified = script_type().qualified_name()
    except Exception:  # noqa: BLE001 - not a TorchScript module after all
        return False
    return qualified.removeprefix("__torch__.").startswith(_DYNAMIC)


def quantized_skip_reason(module: str) -> str:
    """Why a dynamically quantized model gets no ONNX parity (measured with torch 2.13 and 2.14.1)."""
    return (f"dynamically quantized model ({module}): torch's ONNX exporters cannot export torch.ao dynamic "
            f"quantization (TorchScript: no symbolic for quantized::linear_dynamic; dynamo: its packed "
            f"parameters cannot be traced); to deploy int8 ONNX, export the float model and quantize the "
            f"file with onnxruntime.quantization.quantize_dynamic")
