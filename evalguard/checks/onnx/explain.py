"""Why an ONNX file disagrees with the model: the likely causes we can test for cheaply.

Only run after a mismatch. Two explanations are checked:
- the file computes what the model computes in *training* mode (BatchNorm using the batch's
  statistics): it was exported from a model that was not in eval mode;
- none of the model's weights appear in the file: it was exported from other weights.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn

from evalguard.checks.onnx import compare as onnx_compare
from evalguard.checks.onnx.export import CallSpec, reference

_NORMS = (nn.modules.batchnorm._NormBase,)


def has_running_stat_norms(model: nn.Module) -> bool:
    return any(isinstance(m, _NORMS) and getattr(m, "track_running_stats", False) for m in model.modules())


def training_mode_outputs(eval_model: nn.Module, spec: CallSpec) -> list[tuple[str, torch.Tensor]]:
    """The model's outputs with its norm layers in training mode and Dropout kept off, as
    ONNX Runtime computes a training-mode export (it removes the Dropout nodes). Runs on a
    copy: a training-mode pass updates the running statistics."""
    work = copy.deepcopy(eval_model)
    for module in work.modules():
        if isinstance(module, _NORMS):
            module.train()
    return reference(work, spec)


def matches_training_mode(eval_model: nn.Module, spec: CallSpec, onnx_outputs: dict[str, np.ndarray],
                          overrides) -> bool:
    """True when every compared ONNX output matches the training-mode PyTorch outputs."""
    if not onnx_outputs or not has_running_stat_norms(eval_model):
        return False
    train_leaves = dict(training_mode_outputs(eval_model, spec))
    for name, actual in onnx_outputs.items():
        expected = train_leaves.get(name)
        if expected is None:
            return False
        r = onnx_compare.row(name, name, actual, expected, overrides, comparison="", batch=None,
                             histogram=False)
        if not r["passed"]:
            return False
    return True


def weights_found(model: nn.Module, path: str) -> tuple[int, int]:
    """(found, checked): how many of the model's weight tensors appear in the file by value.

    Compared by fingerprint (element count, sum, sum of squares, min, max), which survives
    the transposes and reshapes exporters apply. Conv and norm weights are left out when the
    model has BatchNorm, because an eval-mode export folds BatchNorm into the convolution.
    """
    import onnx
    from onnx import numpy_helper

    folds = has_running_stat_norms(model)
    checked_params = []
    for module in model.modules():
        if folds and isinstance(module, (_NORMS, nn.modules.conv._ConvNd)):
            continue
        for param in module.parameters(recurse=False):
            if param.numel() >= 16 and param.dtype.is_floating_point:
                checked_params.append(param.detach())
    if not checked_params:
        return 0, 0
    proto = onnx.load(path)   # with external data: the weights are what we compare
    prints: dict[int, list[np.ndarray]] = {}
    for init in proto.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype.kind == "f" and array.size >= 16:
            prints.setdefault(array.size, []).append(_fingerprint(array))
    found = 0
    for param in checked_params:
        mine = _fingerprint(param.cpu().double().numpy())
        if any(np.allclose(mine, other, rtol=1e-4, atol=1e-6) for other in prints.get(param.numel(), [])):
            found += 1
    return found, len(checked_params)


def no_weights_found_note(model: nn.Module, checked: int) -> str:
    """EG401's hint when none of the compared weights is in the file, counting what was compared
    against all the model's weight tensors (the two differ: small and BatchNorm-folded ones are skipped)."""
    total = sum(1 for p in model.parameters() if p.dtype.is_floating_point)
    compared = f"{checked} weight tensor{'' if checked == 1 else 's'}"
    if checked < total:
        skipped = ("conv and norm weights, which BatchNorm folds into at export, and tensors of fewer than "
                   "16 values" if has_running_stat_norms(model) else "tensors of fewer than 16 values")
        compared += f" compared by value (of the model's {total}; left out: {skipped})"
    else:
        compared = f"the model's {compared}"
    verb = "appears" if checked == 1 else "appear"
    return (f"None of {compared} {verb} in the file: it was probably exported from other weights "
            "(a stale file?)")


def _fingerprint(array: np.ndarray) -> np.ndarray:
    a = array.astype(np.float64).reshape(-1)
    return np.array([a.sum(), (a * a).sum(), a.min(), a.max()])
