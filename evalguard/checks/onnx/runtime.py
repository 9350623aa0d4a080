"""ONNX Runtime sessions and feeds: which tensor goes to which graph input, in which dtype."""
from __future__ import annotations

import os
import re

import numpy as np
import torch

from evalguard.checks.onnx.console import progress, quiet

#: onnxruntime's input type strings -> numpy dtypes we can feed.
_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}
_ORT_PREAMBLE = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class FeedError(Exception):
    """The graph's inputs cannot be fed from the model's inputs."""


def thread_count() -> int:
    """The cores this process may use (2 on the CI runners), capped: ORT's default of one
    thread per core ignores CPU affinity and oversubscribes small containers. Never more than
    torch's own setting, which ``--jobs`` divides between worker processes."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(cores, torch.get_num_threads(), 16))


def session(path: str, providers=(CPU,), label: str = ""):
    """An InferenceSession with the default (deployment-like) graph optimisations, silent logs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = thread_count()
    options.inter_op_num_threads = 1
    options.log_severity_level = 4   # errors come back as exceptions; ORT's own log is noise here
    with progress(f"creating ONNX Runtime session{label}"), quiet():
        return ort.InferenceSession(path, options, providers=list(providers))


def feeds(sess, names: list[str], tensors: list[torch.Tensor]) -> dict:
    """Map the model's tensor inputs onto the graph inputs: by name when every graph input
    name is one of ours (our exports, most hand exports of transformers), else by position."""
    graph_inputs = sess.get_inputs()
    ours = dict(zip(names, tensors))
    if all(i.name in ours for i in graph_inputs):
        chosen = [ours[i.name] for i in graph_inputs]
    elif len(graph_inputs) <= len(tensors):
        chosen = tensors[: len(graph_inputs)]
    else:
        wanted = ", ".join(i.name for i in graph_inputs)
        raise FeedError(f"the ONNX graph takes {len(graph_inputs)} inputs ({wanted}) "
                        f"but the model gets {len(tensors)} ({', '.join(names) or 'none'}); pass "
                        "--example-inputs with a dict holding every graph input by name")
    return {i.name: _to_numpy(t, i) for i, t in zip(graph_inputs, chosen)}


def _to_numpy(tensor: torch.Tensor, graph_input) -> np.ndarray:
    wanted = _ORT_TYPES.get(graph_input.type)
    value = tensor.detach().cpu()
    if value.dtype == torch.bfloat16:   # numpy has no bfloat16
        value = value.float()
    array = value.numpy()
    if wanted is None:
        raise FeedError(f"graph input {graph_input.name!r} has type {graph_input.type}, "
                        "which the onnxruntime Python API cannot feed here")
    return array.astype(wanted, copy=False)


def run(sess, feed: dict) -> list[np.ndarray]:
    with quiet():
        return sess.run(None, feed)


def fixed_batch_inputs(sess) -> dict[str, int]:
    """Graph inputs whose first dimension is a number rather than a symbol."""
    fixed = {}
    for graph_input in sess.get_inputs():
        shape = graph_input.shape
        if shape and isinstance(shape[0], int):
            fixed[graph_input.name] = shape[0]
    return fixed


def short(exc: BaseException, limit: int = 240) -> str:
    """ORT's error text without its ``[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :`` preamble."""
    text = _ORT_PREAMBLE.sub("", " ".join(str(exc).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."
