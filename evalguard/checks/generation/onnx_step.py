"""EG408's runtime: one decoder step with its KV cache exported to ONNX and decoded greedily in
ONNX Runtime, feeding each step's ``present`` tensors back as the next step's ``past``.

The graph is the layout ``optimum-cli export onnx`` gives a decoder with past: inputs
``input_ids``, ``attention_mask``, ``position_ids`` and ``past_key_values.{i}.key/value``
(batch, kv heads, past length, head dim), outputs ``logits`` and ``present.{i}.key/value``. One
graph serves the prompt (past length 0) and every later step (one token). It is traced with the
TorchScript exporter: with torch 2.13 / transformers 5.25 the dynamo exporter needs a dynamic
shape for every cache tensor and took ~10x longer for the same graph; tracing rebuilds a
``DynamicCache`` from the flat tensors inside the traced function, which ``DynamicCache`` allows.
"""
from __future__ import annotations

import inspect
import time

import torch
from torch import nn

from evalguard.checks.generation.decode import Decode

#: Past length and new tokens of the trace (not 0 or 1: the exporter specialises such sizes).
_TRACE_PAST, _TRACE_NEW = 3, 2


class _Step(nn.Module):
    """flat (input_ids, attention_mask, position_ids, *past) -> (logits, *present)."""

    def __init__(self, model, layers: int):
        super().__init__()
        self.model, self.layers = model, layers
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    def forward(self, input_ids, attention_mask, position_ids, *past):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for layer in range(self.layers):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         use_cache=True, **{self.cache_arg: cache})
        present = getattr(out, "cache", None) or out.past_key_values
        flat = []
        for layer in present.layers:
            flat += [layer.keys, layer.values]
        return (out.logits, *flat)


def cache_shapes(model) -> list[tuple[int, ...]]:
    """(batch, heads, 0, head dim) of each past tensor, read from a one-token eager pass (float32
    caches only: ONNX Runtime's CPU provider runs the float32 graphs this check exports)."""
    with torch.no_grad():
        out = model(input_ids=torch.zeros((1, 1), dtype=torch.long), use_cache=True)
    present = getattr(out, "cache", None) or out.past_key_values
    layers = getattr(present, "layers", None)
    if not layers or any(not hasattr(layer, "keys") for layer in layers):
        raise RuntimeError(f"the model's cache ({type(present).__name__}) is not a per-layer key/value cache")
    dtypes = {layer.keys.dtype for layer in layers}
    if dtypes != {torch.float32}:
        raise RuntimeError(f"the cache holds {', '.join(sorted(str(d) for d in dtypes))} tensors; the exported "
                           "step is run with float32 caches only")
    shapes = []
    for layer in layers:
        shapes += [(1, layer.keys.shape[1], 0, layer.keys.shape[3]),
                   (1, layer.values.shape[1], 0, layer.values.shape[3])]
    return shapes


def names(count: int) -> tuple[list[str], list[str]]:
    past = [f"past_key_values.{i // 2}.{'key' if i % 2 == 0 else 'value'}" for i in range(count)]
    return past, [name.replace("past_key_values", "present") for name in past]


def export(model, path: str) -> float:
    """Export the step graph to ``path``; the seconds it took. Raises what the exporter raises."""
    from evalguard.checks.onnx.console import quiet

    start = time.perf_counter()
    shapes = cache_shapes(model)
    past_names, present_names = names(len(shapes))
    past = [torch.zeros(s[0], s[1], _TRACE_PAST, s[3]) for s in shapes]
    ids = torch.ones((1, _TRACE_NEW), dtype=torch.long)
    mask = torch.ones((1, _TRACE_PAST + _TRACE_NEW), dtype=torch.long)
    positions = torch.arange(_TRACE_PAST, _TRACE_PAST + _TRACE_NEW).unsqueeze(0)
    axes = {"input_ids": {0: "batch", 1: "new"}, "attention_mask": {0: "batch", 1: "total"},
            "position_ids": {0: "batch", 1: "new"}, "logits": {0: "batch", 1: "new"}}
    axes.update({n: {0: "batch", 2: "past"} for n in past_names})
    axes.update({n: {0: "batch", 2: "total"} for n in present_names})
    with quiet(), torch.no_grad():
        torch.onnx.export(_Step(model, len(shapes) // 2), (ids, mask, positions, *past), path, dynamo=False,
                          input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                          output_names=["logits", *present_names], dynamic_axes=axes, opset_version=18)
    return round(time.perf_counter() - start, 3)


def greedy(session, shapes: list[tuple[int, ...]], prompt: torch.Tensor, steps: int) -> Decode:
    """Greedy decode of one prompt in ONNX Runtime with the graph's own KV cache."""
    import numpy as np

    past_names, _ = names(len(shapes))
    past = [np.zeros(s, dtype=np.float32) for s in shapes]
    ids = prompt.numpy()[None, :].astype(np.int64)
    length = ids.shape[1]
    positions = np.arange(length, dtype=np.int64)[None, :]
    tokens, logits = [], []
    for _ in range(steps):
        feed = {"input_ids": ids, "attention_mask": np.ones((1, length), dtype=np.int64),
                "position_ids": positions, **dict(zip(past_names, past))}
        out = session.run(None, feed)
        last = torch.from_numpy(np.array(out[0][0, -1], dtype=np.float32))
        token = int(last.argmax())
        tokens.append(token)
        logits.append(last)
        past = out[1:]
        ids = np.array([[token]], dtype=np.int64)
        positions = np.array([[length]], dtype=np.int64)
        length += 1
    return Decode(tokens, logits)
