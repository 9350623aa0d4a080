"""A module-level dataflow graph of a model, as it actually computes.

Two views build the same ``Dataflow``:

* ``fx``: ``torch.fx`` symbolic tracing (no inputs needed); shapes are added by one eval-mode
  run of the traced graph when example inputs exist.
* ``hooks``: one eval-mode forward pass with forward hooks on every leaf module and a
  ``TorchFunctionMode`` that records the functional ops between them (``x + y``, ``F.dropout``,
  ``view``), linked by tensor identity. It sees data-dependent control flow that fx cannot trace.

Only operations that depend on the model's inputs become nodes; parameters, buffers and
constants built inside ``forward`` are not data. Both views see the model in eval mode: a
model the audit loaded itself in place (modes put back), a user's object on a deep copy.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import weakref
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from evalguard.checks.architecture import ops as arch_ops
from evalguard.checks.running import in_eval_mode
from evalguard.errors import InternalError
from evalguard.tensors import flatten_outputs


@dataclass
class Node:
    index: int
    category: str
    label: str                  # module path, or ``op()`` for a function
    module: str                 # module path (the module itself, or the scope a function ran in)
    is_module: bool
    kind: str                   # module class name or function name
    inputs: tuple[int, ...]     # distinct data-dependent producers
    shape: tuple[int, ...] | None = None
    dropout_p: float | None = None
    conv_dims: int | None = None

    @property
    def n_data_inputs(self) -> int:
        return len(self.inputs)


@dataclass
class Dataflow:
    view: str                                   # "fx" or "hooks"
    nodes: list[Node] = field(default_factory=list)
    outputs: set[int] = field(default_factory=set)
    _users: list[list[int]] | None = field(default=None, repr=False, compare=False)

    @property
    def users(self) -> list[list[int]]:
        if self._users is None:
            self._users = [[] for _ in self.nodes]
            for node in self.nodes:
                for source in node.inputs:
                    self._users[source].append(node.index)
        return self._users

    def add(self, **fields) -> Node:
        node = Node(index=len(self.nodes), **fields)
        self.nodes.append(node)
        self._users = None
        return node


class DataflowUnavailable(Exception):
    """A view could not be built; the message says why (for ``subject.info``)."""


def eval_model(model: nn.Module, owned: bool) -> contextlib.AbstractContextManager[nn.Module]:
    """The model to trace or run in eval mode: the model itself when the audit loaded it
    (its mode flags are put back afterwards; eval-mode passes change no buffers), otherwise a
    deep copy, because the user's own object must not be touched."""
    return in_eval_mode(model) if owned else contextlib.nullcontext(eval_copy(model))


def eval_copy(model: nn.Module) -> nn.Module:
    """The audit's private copy: hooks, tracing and forward passes never touch the user's model."""
    try:
        duplicate = copy.deepcopy(model)
    except Exception as exc:
        raise DataflowUnavailable(f"cannot deep-copy the model ({_reason(exc)})") from exc
    return duplicate.eval()


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}"


def _module_fields(module: nn.Module, name: str) -> dict:
    category = arch_ops.module_category(module)
    return dict(category=category, label=name or "<root>", module=name, is_module=True,
                kind=arch_ops.module_type_name(module),
                dropout_p=arch_ops.module_dropout_p(module) if category == arch_ops.DROPOUT else None,
                conv_dims=arch_ops.conv_spatial_dims(module))


def _function_fields(name: str, scope: str, args, kwargs) -> dict:
    category = arch_ops.function_category(name)
    label = f"{scope}.{name}()" if scope else f"{name}()"
    return dict(category=category, label=label, module=scope, is_module=False, kind=name,
                dropout_p=arch_ops.function_dropout_p(args, kwargs) if category == arch_ops.DROPOUT else None,
                conv_dims=arch_ops.conv_function_dims(name))


def _shape(value) -> tuple[int, ...] | None:
    for _, tensor in flatten_outputs(value):
        return tuple(tensor.shape)
    return None


# ---- fx view ---------------------------------------------------------------------------

class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return arch_ops.is_leaf(module)


def from_fx(model: nn.Module, inputs=None) -> Dataflow:
    """Trace ``model`` (already a private eval-mode copy). Raises DataflowUnavailable."""
    try:
        graph = _LeafTracer().trace(model)
    except Exception as exc:
        raise DataflowUnavailable(f"torch.fx cannot trace the model ({_reason(exc)})") from exc
    flow = Dataflow(view="fx")
    index_of: dict[fx.Node, int] = {}
    for fx_node in graph.nodes:
        sources = []
        fx.node.map_arg((fx_node.args, fx_node.kwargs), sources.append)
        inputs_ = tuple(dict.fromkeys(index_of[s] for s in sources if s in index_of))
        if fx_node.op == "output":
            flow.outputs.update(inputs_)
            continue
        if fx_node.op == "placeholder":
            fields = dict(category=arch_ops.INPUT, label=fx_node.target, module="", is_module=False,
                          kind="input")
        elif not inputs_:
            continue  # get_attr and anything computed from constants only
        elif fx_node.op == "call_module":
            fields = _module_fields(model.get_submodule(fx_node.target), fx_node.target)
        else:
            name = arch_ops.function_name(fx_node.target)
            if name in arch_ops.NON_TENSOR_OPS:
                continue  # x.shape / x.size(): numbers, so what is computed from them is not data
            stack = fx_node.meta.get("nn_module_stack") or {}
            scope = next(reversed(stack)) if stack else ""
            fields = _function_fields(name, scope, fx_node.args, fx_node.kwargs)
        index_of[fx_node] = flow.add(inputs=inputs_, **fields).index
    if inputs is not None:
        _add_fx_shapes(model, graph, flow, index_of, inputs)
    return flow


def _add_fx_shapes(model, graph, flow, index_of, inputs) -> None:
    """Run the traced graph once to learn output shapes; shapes stay unknown if that fails."""
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    try:
        bound = inspect.signature(model.forward).bind(*inputs.args, **inputs.kwargs)
        bound.apply_defaults()
        values = [bound.arguments[str(p.target)] for p in placeholders]
    except (TypeError, KeyError, ValueError):
        return

    class _ShapeRecorder(fx.Interpreter):
        def run_node(self, fx_node):
            result = super().run_node(fx_node)
            if fx_node in index_of:
                flow.nodes[index_of[fx_node]].shape = _shape(result)
            return result

    try:
        with torch.no_grad():
            _ShapeRecorder(model, graph=graph).run(*values)   # no GraphModule: recompiling costs seconds at 10k nodes
    except Exception:
        pass  # shapes recorded before the failure are still right; the rest stay unknown


# ---- hooks view ------------------------------------------------------------------------

#: The step named in EG900 when the recorder itself breaks.
RECORDER_STEP = "dataflow recorder"


def _probe(method):
    """A recorder callback is a probe riding on the user's forward: evalguard's own bookkeeping.
    If it raises, the recorder detaches (every later callback is a no-op), keeps the exception
    in ``failure`` and the forward goes on, so a bug here is never the model's failure."""
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        if self.failure is not None:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - evalguard's bug: reported as EG900 by the caller
            self.failure = exc
            return None
    return guarded


class _Recorder(TorchFunctionMode):
    """Links tensors to the node that produced them while one forward pass runs."""

    def __init__(self, flow: Dataflow):
        super().__init__()
        self.failure: Exception | None = None
        self.flow = flow
        self.producer: dict[int, int] = {}   # id(tensor) -> node index, only while the tensor lives
        self.scope: list[str] = [""]
        self.leaf_depth = 0
        self.pending: list[tuple[int, ...]] = []

    def produced(self, tensors, index: int) -> None:
        for tensor in tensors:
            key = id(tensor)
            if key not in self.producer:
                # Forget the id when the tensor dies, so a new tensor reusing it is not misread.
                weakref.finalize(tensor, self.producer.pop, key, None)
            self.producer[key] = index

    def sources(self, tensors) -> tuple[int, ...]:
        found = (self.producer.get(id(t)) for t in tensors)
        return tuple(dict.fromkeys(i for i in found if i is not None))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)     # the user's op: whatever it raises is the model's
        self._note_call(func, args, kwargs, result)
        return result

    @_probe
    def _note_call(self, func, args, kwargs, result) -> None:
        if self.leaf_depth == 0:
            inputs_ = self.sources(_flat_tensors(args, kwargs))
            outputs = [t for _, t in flatten_outputs(result)]
            if inputs_ and outputs:
                name = arch_ops.function_name(func)
                node = self.flow.add(inputs=inputs_, shape=tuple(outputs[0].shape),
                                     **_function_fields(name, self.scope[-1], args, kwargs))
                self.produced(outputs, node.index)

    # module hooks (each returns None: the module's inputs and outputs are never replaced)
    @_probe
    def leaf_pre(self, module, args, kwargs):
        self.pending.append(self.sources(_flat_tensors(args, kwargs)) if self.leaf_depth == 0 else ())
        self.leaf_depth += 1

    def leaf_post(self, name):
        def hook(module, args, kwargs, output):
            self._leaf_done(module, name, output)
        return hook

    @_probe
    def _leaf_done(self, module, name, output) -> None:
        self.leaf_depth -= 1
        inputs_ = self.pending.pop()
        outputs = [t for _, t in flatten_outputs(output)]
        if self.leaf_depth == 0 and inputs_ and outputs:
            node = self.flow.add(inputs=inputs_, shape=tuple(outputs[0].shape),
                                 **_module_fields(module, name))
            self.produced(outputs, node.index)

    def scope_pre(self, name):
        def hook(module, args):
            self._enter_scope(name)
        return hook

    @_probe
    def _enter_scope(self, name) -> None:
        self.scope.append(name)

    @_probe
    def scope_post(self, module, args, output):
        self.scope.pop()


def _flat_tensors(args, kwargs) -> list[torch.Tensor]:
    """Tensors among a call's arguments, one list/tuple level deep (``torch.cat([a, b])``)."""
    found = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, torch.Tensor))
    return found


def _install_hooks(model: nn.Module, recorder: _Recorder) -> list:
    handles, seen = [], set()
    stack = [("", model)]
    while stack:
        name, module = stack.pop()
        if id(module) in seen:
            continue  # a module reused under two names keeps its first name
        seen.add(id(module))
        if module is not model and arch_ops.is_leaf(module):
            handles.append(module.register_forward_pre_hook(recorder.leaf_pre, with_kwargs=True))
            handles.append(module.register_forward_hook(recorder.leaf_post(name), with_kwargs=True,
                                                        always_call=True))
            continue
        handles.append(module.register_forward_pre_hook(recorder.scope_pre(name)))
        handles.append(module.register_forward_hook(recorder.scope_post, always_call=True))
        for child_name, child in reversed(list(module.named_children())):
            stack.append((f"{name}.{child_name}" if name else child_name, child))
    return handles


class HooksRecording:
    """Records the hooks view of the next call of ``model`` (its root forward) while active.

    Input nodes come from the arguments that call really receives (a root forward pre-hook),
    and the function mode is on only between the root's pre- and post-hooks, so whatever runs
    around the call (copying inputs, flattening outputs) is not part of the graph. This lets
    the view ride on an eval pass another check runs anyway (``ride_along``) as well as on a
    pass of its own (``from_hooks``). ``flow`` is the result, None with ``error`` set when the
    call failed, never happened, or the recording itself broke.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.failure: Exception | None = None   # the recorder's own bug (a probe detached), if any
        self.flow: Dataflow | None = None
        self.error: str | None = "the model was not called"
        self._recorder = _Recorder(Dataflow(view="hooks"))
        self._handles: list = []
        self._calls = 0
        self._mode_on = False

    def __enter__(self) -> HooksRecording:
        root = self.model
        self._handles.append(root.register_forward_pre_hook(self._root_pre, with_kwargs=True, prepend=True))
        self._handles += _install_hooks(root, self._recorder)
        # not always_call: after a forward that raised, the flow stays None (__exit__ pops the mode)
        self._handles.append(root.register_forward_hook(self._root_post))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._mode_off()   # a forward that raised may have skipped the root's post-hook
        self.failure = self.failure or self._recorder.failure
        if self.failure is not None:
            self.error = f"the {RECORDER_STEP} failed (evalguard's bug, EG900)"
        elif self._calls == 1 and self.error is None:   # the root's forward ran once and returned
            self.flow = self._recorder.flow

    @_probe
    def _root_pre(self, module, args, kwargs):
        self._calls += 1
        if self._calls > 1:
            return None   # a second root call (recursion): the first one is the graph
        flow, recorder = self._recorder.flow, self._recorder
        named = [(f"arg{i}", a) for i, a in enumerate(args)] + list(kwargs.items())
        for name, tensor in (leaf for key, value in named for leaf in flatten_outputs(value, key)):
            recorder.produced([tensor], flow.add(category=arch_ops.INPUT, label=name, module="",
                                                 is_module=False, kind="input",
                                                 inputs=(), shape=tuple(tensor.shape)).index)
        self.error = "the forward pass did not return"
        recorder.__enter__()
        self._mode_on = True
        return None

    def _mode_off(self) -> None:
        if self._mode_on:
            self._mode_on = False
            self._recorder.__exit__(None, None, None)

    @_probe
    def _root_post(self, module, args, output):
        if self._calls != 1 or not self._mode_on:
            return None
        self._mode_off()
        self.error = None
        for _, tensor in flatten_outputs(output):
            index = self._recorder.producer.get(id(tensor))
            if index is not None:
                self._recorder.flow.outputs.add(index)
        return None


@dataclass(frozen=True)
class RecordedDataflow:
    """A hooks view recorded on another check's eval pass, and of which inputs object."""

    inputs: object
    flow: Dataflow | None
    #: the recorder's own exception when it broke (the caller reports EG900; nobody records again)
    failure: Exception | None = None


@contextlib.contextmanager
def ride_along(subject, options, work):
    """Record the hooks view during an eval pass of ``work`` on the subject's inputs that the
    eval-mode check runs anyway (its second pass), instead of one more forward pass of the
    architecture check's own. Yields the recording (None when nothing records); afterwards
    ``subject.recorded_dataflow`` holds the view when the pass returned, or the recorder's
    failure (``recording.failure``, for the caller to report as EG900) when the probe broke.

    Only for an nn.Module (not TorchScript) in eval mode, and only when a dataflow rule is
    selected; otherwise it records nothing. The architecture check uses the recording only when
    torch.fx cannot trace the model (the fx view is preferred)."""
    from evalguard.checks.architecture.flow import FLOW_RULES

    if (not options.wants(*FLOW_RULES) or not isinstance(work, nn.Module)
            or isinstance(work, torch.jit.ScriptModule) or work.training):
        yield None
        return
    recording = HooksRecording(work)
    with recording:
        yield recording
    if recording.flow is not None or recording.failure is not None:
        subject.recorded_dataflow = RecordedDataflow(subject.inputs, recording.flow, recording.failure)


def from_hooks(model: nn.Module, inputs) -> Dataflow:
    """Record one eval-mode forward pass of ``model`` (a private copy). Raises DataflowUnavailable."""
    args, kwargs = _to_model_device(model, inputs.args, dict(inputs.kwargs))
    try:
        with HooksRecording(model) as recording, torch.no_grad():
            model(*args, **kwargs)
    except Exception as exc:
        raise DataflowUnavailable(f"the forward pass failed ({_reason(exc)})") from exc
    if recording.failure is not None:
        raise InternalError(RECORDER_STEP, recording.failure)
    if recording.flow is None:
        raise DataflowUnavailable(f"no dataflow recorded ({recording.error})")
    return recording.flow


def _to_model_device(model, args, kwargs):
    device = next((p.device for p in model.parameters()), None)
    if device is None or device.type == "cpu":
        return args, kwargs

    def move(value):
        return value.to(device) if isinstance(value, torch.Tensor) else value
    return tuple(move(a) for a in args), {k: move(v) for k, v in kwargs.items()}
