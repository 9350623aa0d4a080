"""Name the module responsible for a difference between two forward passes.

Only run after a difference was already seen at the model's outputs, so the clean path pays
no hook overhead. Pass A records, for every module call, its inputs (at entry, before any
in-place op) and its outputs; pass B compares call by call. A module is a *source* when its
inputs matched pass A but its outputs did not, or when it hands a child module inputs that
differ (a functional dropout or SDPA call between two children): the difference was born in
its own code. Pass B then continues with pass A's tensors in place of the differing ones
("teacher forcing"), so every later source is found too, not just the first.

The two passes may run on different batches (EG104): ``mapper`` turns a pass-A tensor into
the tensor pass B should have produced (identity, or the matching rows), or None when the
two cannot be matched.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils._pytree as pytree

from evalguard.checks.eval_mode.compare import Tolerance, batched, gap
from evalguard.checks.eval_mode.random_ops import RandomCalls

Mapper = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | None"]


def same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    return a if a.shape == b.shape else None


def rows_mapper(rows: list[int], batch: int, probe_batch: int) -> Mapper:
    """Pass A ran the full batch, pass B its ``rows`` followed by companion samples (kept as B ran them)."""
    index = torch.tensor(rows, dtype=torch.long)

    def mapper(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
        if not (batched(a, batch) and batched(b, probe_batch)) or a.shape[1:] != b.shape[1:]:
            return None
        picked = a.index_select(0, index.to(a.device)).to(b.dtype)
        return torch.cat([picked, b[len(rows):]]) if probe_batch > len(rows) else picked

    return mapper


@dataclass
class Source:
    module: str           # "" for the top-level module
    type: str
    max_abs_diff: float
    random_calls: list[str] = field(default_factory=list)   # random torch calls made by its own forward


@dataclass
class Trace:
    supported: bool
    sources: list[Source] = field(default_factory=list)
    note: str = ""


@dataclass
class _Call:
    name: str
    inputs: list
    outputs: list = field(default_factory=list)
    spec: Any = None
    random_calls: list[str] = field(default_factory=list)


def _tensor_leaves(value) -> list:
    return [leaf for leaf in pytree.tree_leaves(value) if isinstance(leaf, torch.Tensor)]


def _clone(leaf):
    return leaf.detach().clone() if isinstance(leaf, torch.Tensor) else None


def _differs(a_leaves, b_leaves, mapper: Mapper, tol: Tolerance) -> float | None:
    """Largest failing abs difference between matched leaves, None when all matched leaves agree."""
    worst = None
    for a, b in zip(a_leaves, b_leaves):
        if a is None or not isinstance(b, torch.Tensor):
            continue
        expected = mapper(a, b)
        if expected is None:
            continue
        found = gap(b, expected, tol.atol, tol.rtol)
        if found is not None and (worst is None or found > worst):
            worst = found
    return worst


def _force(reference_leaves, value, mapper: Mapper):
    """``value`` with each tensor leaf replaced by what pass A says it should be, where known."""
    leaves, spec = pytree.tree_flatten(value)
    tensors = iter(reference_leaves)
    forced = []
    for leaf in leaves:
        if not isinstance(leaf, torch.Tensor):
            forced.append(leaf)
            continue
        a = next(tensors, None)
        expected = mapper(a, leaf) if a is not None else None
        forced.append(expected.clone() if expected is not None else leaf)
    return pytree.tree_unflatten(forced, spec)


@dataclass
class _Frame:
    call: _Call | None
    inputs_equal: bool
    type: str = ""
    source: bool = False


def _hookable(model) -> str:
    if isinstance(model, torch.jit.ScriptModule):
        return "forward hooks are not supported on TorchScript modules"
    if not isinstance(model, torch.nn.Module):
        return f"{type(model).__name__} is not a torch.nn.Module"
    return ""


def _type_name(module) -> str:
    return getattr(module, "original_name", None) or type(module).__name__


class _Hooks:
    """Pre/post hooks on every module of ``model`` feeding ``on_enter``/``on_exit``."""

    def __init__(self, model, on_enter, on_exit):
        self.handles = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(
                lambda mod, args, kwargs, name=name: on_enter(name, mod, args, kwargs), with_kwargs=True))
            self.handles.append(module.register_forward_hook(
                lambda mod, args, kwargs, out, name=name: on_exit(name, mod, out), with_kwargs=True))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def record(model, run: Callable[[], Any]) -> list[_Call]:
    """Pass A: every call's inputs and outputs, in entry order."""
    calls: list[_Call] = []
    stack: list[_Call] = []

    def enter(name, module, args, kwargs):
        call = _Call(name, [_clone(x) for x in _tensor_leaves((args, kwargs))])
        calls.append(call)
        stack.append(call)

    def leave(name, module, output):
        call = stack.pop()
        leaves, call.spec = pytree.tree_flatten(output)
        call.outputs = [_clone(leaf) for leaf in leaves]

    def random_call(label):
        if stack and label not in stack[-1].random_calls:
            stack[-1].random_calls.append(label)

    with _Hooks(model, enter, leave), RandomCalls(random_call):
        run()
    return calls


def locate(model, run_a: Callable[[], Any], run_b: Callable[[], Any], tol: Tolerance,
           mapper: Mapper = same) -> Trace:
    """Run the pair with hooks and return every module where a difference was born."""
    reason = _hookable(model)
    if reason:
        return Trace(False, note=f"module not identified: {reason}")
    reference = record(model, run_a)
    sources: list[Source] = []
    stack: list[_Frame] = []
    entered = [0]
    diverged: list[str] = []

    def enter(name, module, args, kwargs):
        index = entered[0]
        entered[0] += 1
        call = reference[index] if index < len(reference) and not diverged else None
        if call is None or call.name != name:
            diverged.append(name)
            stack.append(_Frame(None, False))
            return None
        gap_in = _differs(call.inputs, _tensor_leaves((args, kwargs)), mapper, tol)
        parent = stack[-1] if stack else None
        if gap_in is None or parent is None or parent.call is None or not parent.inputs_equal:
            stack.append(_Frame(call, gap_in is None, _type_name(module)))
            return None
        # The parent's inputs matched, yet it hands this child different ones: born in the parent's code.
        if not parent.source:
            parent.source = True
            sources.append(Source(parent.call.name, parent.type, gap_in, parent.call.random_calls))
        stack.append(_Frame(call, True, _type_name(module)))
        return _force(call.inputs, (args, kwargs), mapper)

    def leave(name, module, output):
        frame = stack.pop()
        call = frame.call
        if call is None:
            return None
        leaves, spec = pytree.tree_flatten(output)
        gap = _differs(call.outputs, leaves, mapper, tol)
        if gap is None:
            return None
        if not frame.inputs_equal:
            return None  # born upstream: the enclosing module whose inputs matched is the source
        if not frame.source:
            sources.append(Source(name, _type_name(module), gap, call.random_calls))
        if spec != call.spec:
            return None
        return _force(call.outputs, output, mapper)

    with _Hooks(model, enter, leave):
        run_b()
    note = f"call order diverged at module {diverged[0]!r}; later modules not compared" if diverged else ""
    return Trace(True, _once_each(sources), note)


def _once_each(sources: list[Source]) -> list[Source]:
    """One entry per module (a shared layer called several times is one source), in first-seen order."""
    merged: dict[str, Source] = {}
    for source in sources:
        seen = merged.get(source.module)
        if seen is None:
            merged[source.module] = source
            continue
        seen.max_abs_diff = max(seen.max_abs_diff, source.max_abs_diff)
        seen.random_calls.extend(c for c in source.random_calls if c not in seen.random_calls)
    return list(merged.values())


def grad_source(model, run: Callable[[], Any]) -> Trace:
    """The module whose forward turned autograd back on inside ``no_grad``.

    That is the module on top of the call stack when a child is first entered with grad
    enabled, or, for a module without children, the first whose outputs require grad.
    """
    reason = _hookable(model)
    if reason:
        return Trace(False, note=f"module not identified: {reason}")
    found: list[Source] = []
    stack: list[tuple[str, str, bool]] = []

    def enter(name, module, args, kwargs):
        grad_now = torch.is_grad_enabled()
        if not found and grad_now and stack and not stack[-1][2]:
            found.append(Source(stack[-1][0], stack[-1][1], 0.0))
        stack.append((name, _type_name(module), grad_now))

    def leave(name, module, output):
        _, type_name, grad_at_entry = stack.pop()
        if not found and not grad_at_entry and any(x.requires_grad for x in _tensor_leaves(output)):
            found.append(Source(name, type_name, 0.0))

    with _Hooks(model, enter, leave):
        run()
    return Trace(True, found)
