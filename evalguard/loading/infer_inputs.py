"""Guess example inputs from a model's first layer, for the simple cases only."""
from __future__ import annotations

from evalguard.subject import AuditOptions, ExampleInputs


def infer_inputs(model, options: AuditOptions) -> ExampleInputs | None:
    """Batch of 2 shaped for the first Linear/Embedding/Conv found; None when unsure."""
    import torch.nn as nn

    from evalguard.loading.inputs import make_tensor

    batch = 2
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            shape, dtype, high = (batch, module.in_features), "float32", 2
        elif isinstance(module, nn.Embedding):
            shape, dtype, high = (batch, 8), "int64", module.num_embeddings
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            spatial = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}[type(module)]
            shape, dtype, high = (batch, module.in_channels) + (32,) * spatial, "float32", 2
        else:
            continue
        tensor = make_tensor(shape, dtype, high=high, seed=options.seed)
        return ExampleInputs(args=(tensor,), source=f"inferred from first layer {name or 'model'} "
                                                    f"({type(module).__name__})")
    return None
