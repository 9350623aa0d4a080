"""EG205-EG207: rules read from the module tree and its tensors alone (no inputs, no forward).

Each walks the model once, so the cost grows linearly with the number of modules and
parameter elements.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from evalguard.checks.architecture import ops
from evalguard.findings import Finding, Location
from evalguard.subject import OWNED_KINDS

STATIC_RULES = ("EG205", "EG206", "EG207")
#: EG206: Dropout rates above this, in a block with BatchNorm, are "heavy".
HEAVY_DROPOUT = 0.1


def findings(model: nn.Module, selected: frozenset[str], path: str, kind: str) -> list[Finding]:
    modules = list(model.named_modules())
    found: list[Finding] = []
    if "EG205" in selected:
        found.extend(_eg205(modules, path, kind))
    if "EG206" in selected:
        found.extend(_eg206(modules, path))
    if "EG207" in selected:
        found.extend(_eg207(model, path))
    return found


def _location(path: str, module: str) -> Location:
    return Location(path=path, module=module or None)


# ---- EG205 batchnorm-stats-never-updated -----------------------------------------------

def _running_stats(module: nn.Module):
    """(mean, var) of a BatchNorm that tracks running statistics, else None."""
    if ops.module_category(module) != ops.BATCHNORM:
        return None
    mean, var = getattr(module, "running_mean", None), getattr(module, "running_var", None)
    if not isinstance(mean, torch.Tensor) or not isinstance(var, torch.Tensor):
        return None   # track_running_stats=False: EG104's concern, not this rule's
    if isinstance(mean, nn.parameter.UninitializedBuffer) or mean.is_meta:
        return None   # a lazy BatchNorm that never ran has no statistics at all yet
    return mean, var


def _at_init(stats) -> bool:
    mean, var = stats
    return bool((mean == 0).all()) and bool((var == 1).all())


def _is_constant(tensor) -> bool:
    flat = tensor.detach().reshape(-1)
    return flat.numel() < 2 or bool((flat == flat[0]).all())


def _trained_evidence(modules, kind: str) -> str | None:
    """Why we believe the weights were trained; None when nothing shows it (a fresh model)."""
    if kind in OWNED_KINDS:  # factories and live modules may be deliberately untrained
        return f"the model was loaded from a file ({kind}), so it is meant to be trained"
    for name, module in modules:
        stats = _running_stats(module)
        if stats is not None and not _at_init(stats):
            return f"BatchNorm `{name}` in the same model has updated statistics"
    for name, module in modules:
        if ops.module_category(module) in (ops.BATCHNORM, ops.NORM):
            for attr in ("weight", "bias"):
                value = getattr(module, attr, None)
                # Norm layers start with a constant weight (1, or 0 for zero-init residuals)
                # and bias 0; per-channel differences only come from training.
                if isinstance(value, torch.Tensor) and not _is_constant(value):
                    return f"`{name}.{attr}` has moved from its constant initial value"
    return None


def _eg205(modules, path: str, kind: str) -> Iterator[Finding]:
    stale = [(name, m, stats) for name, m in modules
             if (stats := _running_stats(m)) is not None and _at_init(stats)]
    if not stale:
        return
    reason = _trained_evidence(modules, kind)
    if reason is None:
        return
    for name, module, (mean, _) in stale:
        tracked = getattr(module, "num_batches_tracked", None)
        tracked = int(tracked) if isinstance(tracked, torch.Tensor) and tracked.numel() == 1 else None
        yield Finding(
            rule="EG205", location=_location(path, name),
            message=(f"BatchNorm `{name}` still has its initial running statistics (mean 0, variance 1"
                     f"{', num_batches_tracked 0' if tracked == 0 else ''}) although {reason}: in eval() "
                     "it does not normalise its input. Load the trained running_mean/running_var "
                     "(load_state_dict(strict=True) names missing keys) or re-estimate them with "
                     "training-mode passes over training data."),
            evidence={"num_batches_tracked": tracked, "num_features": int(mean.numel()),
                      "trained_evidence": reason})


# ---- EG206 heavy-dropout-with-batchnorm ------------------------------------------------

def _block_members(block: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Direct children, with plain containers (Sequential, ModuleList) opened one level."""
    for name, child in block.named_children():
        yield name, child
        if isinstance(child, ops.CONTAINERS):
            for inner, grandchild in child.named_children():
                yield f"{name}.{inner}", grandchild


def _eg206(modules, path: str) -> Iterator[Finding]:
    reported = set()
    for block_name, block in reversed(modules):   # innermost blocks first, so they name the block
        members = list(_block_members(block))
        kinds = [ops.module_category(m) for _, m in members]
        for position, (member, module) in enumerate(members):
            p = ops.module_dropout_p(module) if kinds[position] == ops.DROPOUT else 0.0
            if p <= HEAVY_DROPOUT or id(module) in reported:
                continue
            # A block's BatchNorms count wherever they sit (blocks are stacked, so a Dropout at a
            # block's end feeds the next one). The model's top level is a sequence of stages:
            # there only a BatchNorm registered after the Dropout counts, so the usual
            # `features (BatchNorm) -> classifier (Dropout)` layout is not reported.
            candidates = range(position + 1, len(members)) if not block_name else range(len(members))
            norms = [_join(block_name, members[i][0]) for i in candidates if kinds[i] == ops.BATCHNORM]
            if not norms:
                continue
            reported.add(id(module))
            name = _join(block_name, member)
            where = (f"is in block `{block_name}` with BatchNorm `{norms[0]}`" if block_name
                     else f"sits at the model's top level before BatchNorm `{norms[0]}`")
            yield Finding(
                rule="EG206", location=_location(path, name),
                message=(f"{ops.module_type_name(module)} `{name}` (p={p:g}) {where}: wherever its output "
                         "reaches a BatchNorm (often the next "
                         "block's), the variance shift grows with p. Keep "
                         f"p <= {HEAVY_DROPOUT:g} in BatchNorm blocks, or move the Dropout out of them."),
                evidence={"p": p, "block": block_name, "batchnorms": norms})


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# ---- EG207 non-finite-parameters -------------------------------------------------------

def _eg207(model: nn.Module, path: str) -> Iterator[Finding]:
    tensors = [("parameter", n, t) for n, t in model.named_parameters()]
    tensors += [("buffer", n, t) for n, t in model.named_buffers()]
    for what, name, tensor in tensors:
        if tensor is None or tensor.is_meta or not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        if isinstance(tensor, nn.parameter.UninitializedTensorMixin):
            continue
        data = tensor.detach()
        if _all_finite(data):
            continue
        nan, inf = int(torch.isnan(data).sum()), int(torch.isinf(data).sum())
        if what == "buffer" and _is_additive_mask(name, data, nan, inf):
            continue
        owner = name.rpartition(".")[0]
        counts = " and ".join(f"{n} {label}" for n, label in ((nan, "NaN"), (inf, "Inf")) if n)
        yield Finding(
            rule="EG207", location=_location(path, owner),
            message=(f"{what} `{name}` holds {counts} of {data.numel()} values: any computation "
                     "that reads them gives NaN/Inf. Restore the tensor from a healthy checkpoint or find "
                     "the training step that diverged."),
            evidence={"tensor": name, "kind": what, "nan": nan, "inf": inf, "numel": int(data.numel()),
                      "shape": list(data.shape)})


#: dtypes whose min/max reduction propagates NaN (and shows +-Inf) without temporaries.
_MINMAX_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _all_finite(data) -> bool:
    """Whether every value is finite. ``torch.isfinite(x).all()`` allocates temporaries of several
    times the tensor (a 65M-element bfloat16 embedding took +320 MiB at peak) and reads it more
    than once; ``aminmax`` is one pass with no temporaries and is NaN when any value is NaN."""
    if data.dtype in _MINMAX_DTYPES and data.numel() > 0:
        low, high = torch.aminmax(data)
        return bool(torch.isfinite(low)) and bool(torch.isfinite(high))
    return bool(torch.isfinite(data).all())


def _is_additive_mask(name: str, data, nan: int, inf: int) -> bool:
    """A buffer of finite values and -inf (a causal/attention mask added to scores) is deliberate."""
    if nan or name.endswith(("running_mean", "running_var")):
        return False
    return int((data == float("-inf")).sum()) == inf
