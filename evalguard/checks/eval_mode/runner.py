"""Run a model without changing what the user owns: one seed, cloned inputs, and either a
private copy or the model itself with everything put back.

A train-mode forward under ``no_grad`` still updates BatchNorm running statistics. A model the
audit loaded from a file is private to the audit, so it runs in place and its buffers and mode
flags are restored afterwards (copying a large checkpoint would double its memory). A model the
user's code handed over (a factory's, a live one) runs on a deep copy; where it cannot be
deep-copied we run the original and put every parameter, buffer and mode flag back (and say so
in the report).
"""
from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils._pytree as pytree

from evalguard.checks.running import mode_flags, restore_mode_flags
from evalguard.errors import TargetError
from evalguard.subject import ExampleInputs


class ForwardFailed(Exception):
    """The model's forward raised, or returned nothing we can compare."""


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch, ``random`` and numpy once; restore the caller's generator states afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    py_state = random.getstate()
    np_random = _numpy_random()
    np_state = np_random.get_state() if np_random is not None else None
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        random.seed(seed)
        if np_random is not None:
            np_random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(py_state)
            if np_random is not None:
                np_random.set_state(np_state)


def _numpy_random():
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is a dependency
        return None
    return numpy.random


@dataclass
class Snapshot:
    """Mode flags and tensor values of a module tree, to put back after running it."""

    modes: dict[str, bool]
    tensors: dict[str, torch.Tensor]

    @classmethod
    def take(cls, model, parameters: bool = True) -> Snapshot:
        return cls(modes=mode_flags(model),
                   tensors={name: t.detach().clone() for name, t in _state(model, parameters)})

    def restore(self, model, parameters: bool = True) -> None:
        with torch.no_grad():
            for name, tensor in _state(model, parameters):
                saved = self.tensors.get(name)
                if saved is not None and saved.shape == tensor.shape:
                    tensor.copy_(saved)
        restore_mode_flags(model, self.modes)


def _state(model, parameters: bool):
    named = list(model.named_buffers())
    if parameters:
        named = list(model.named_parameters()) + named
    return [(name, t) for name, t in named if isinstance(t, torch.Tensor)]


@dataclass
class PrivateModel:
    """The model the checks may run, train and eval freely; ``method`` says how it was isolated."""

    module: Any
    method: str
    _snapshot: Snapshot | None = None

    @classmethod
    def of(cls, model, device: str, owned: bool = False) -> PrivateModel:
        if owned and device == "cpu":
            # The audit loaded this model itself: run it in place and put back what forward
            # passes can change (buffers such as BatchNorm statistics, and the mode flags);
            # a deep copy would double the memory of a large checkpoint.
            return cls(model, "in place (loaded by the audit; buffers and modes restored)",
                       Snapshot.take(model, parameters=False))
        try:
            work = copy.deepcopy(model)
        except Exception as exc:  # noqa: BLE001 - any failure means: fall back to snapshot/restore
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            return cls(model, f"snapshot-restore (deepcopy failed: {reason})", Snapshot.take(model))
        if device != "cpu" and hasattr(work, "to"):
            work = work.to(device)
        return cls(work, "deepcopy")

    def release(self) -> None:
        if self._snapshot is not None:
            self._snapshot.restore(self.module)


def to_device(inputs: ExampleInputs, device: str) -> ExampleInputs:
    if device == "cpu":
        return inputs
    move = lambda v: v.to(device) if isinstance(v, torch.Tensor) else v  # noqa: E731
    return ExampleInputs(tuple(pytree.tree_map(move, list(inputs.args))),
                         pytree.tree_map(move, dict(inputs.kwargs)), inputs.source)


def _fresh(value):
    # Each pass gets its own copy: a forward that edits its input in place must not leak into the next.
    return pytree.tree_map(lambda v: v.clone() if isinstance(v, torch.Tensor) else v, value)


def call(model, inputs: ExampleInputs):
    """One forward pass under ``no_grad`` on fresh copies of the inputs; returns the raw output."""
    args, kwargs = _fresh(list(inputs.args)), _fresh(dict(inputs.kwargs))
    try:
        with torch.no_grad():
            return model(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's forward may raise anything
        lines = f"{type(exc).__name__}: {exc}".strip().splitlines()
        # the TorchScript interpreter puts the real error (e.g. an allocation failure) last
        message = (lines[-1] if "TorchScript interpreter" in lines[0] else lines[0])[:300]
        raise ForwardFailed(message) from exc


def describe(inputs: ExampleInputs) -> str:
    text = ", ".join(inputs.describe()) or "no inputs"
    return f"{text}; from {inputs.source}" if inputs.source else text


def first_pass_error(inputs: ExampleInputs, reason: str) -> TargetError:
    return TargetError(f"forward failed on the example inputs ({describe(inputs)}): {reason}")
