"""Where an ONNX export starts to differ from the model: the first divergent module (EG401).

Only run after a parity failure. The exporters record which module each ONNX node came from:
the TorchScript exporter in node names (``/layers/layers.0/conv/Conv``), the dynamo exporter
in ``pkg.torch.onnx.name_scopes`` metadata. From that:

1. each module's ONNX *boundary*: the tensors its nodes produce for nodes outside it (its
   outputs) and the non-constant tensors its nodes read from outside (its inputs);
2. a copy of the graph with those tensors as extra graph outputs, run once by ONNX Runtime;
3. the same modules' inputs and outputs in PyTorch, recorded by hooks on one eval pass;
4. in the graph's topological order, the first module whose output is out of tolerance. When
   its inputs match, that is the answer; when they do not, the divergence began in code that
   belongs to no compared module, and the answer is the nearest enclosing module whose inputs
   still match (its own forward code, between its submodules).

Exporters fold some modules into their neighbours (BatchNorm into the preceding Conv): a leaf
module with no ONNX node of its own, fed by (or feeding) a module that has nodes, is compared
together with it as one unit, and named in ``folded``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from evalguard.checks.onnx import compare as onnx_compare
from evalguard.checks.onnx.export import CallSpec
from evalguard.checks.onnx.static import node_module
from evalguard.tensors import flatten_outputs

#: ONNX nodes listed per module in the evidence; the count covers the rest.
MAX_NODES = 8
#: Protobuf's limit: a copy of the graph above it cannot be handed to ONNX Runtime in memory.
MAX_BYTES = 2_000_000_000
_NAME_SCOPES = "pkg.torch.onnx.name_scopes"


@dataclass
class _Boundary:
    nodes: list[int] = field(default_factory=list)      # indices of the module's nodes, in graph order
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


@dataclass
class _Call:
    """One module's single forward call in PyTorch: its tensor inputs and outputs (copies)."""

    type: str
    inputs: list[tuple[int, torch.Tensor]] = field(default_factory=list)    # (id of the original, copy)
    outputs: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    calls: int = 0


@dataclass
class _Unit:
    """A module with ONNX nodes, plus the node-less leaf modules folded into it."""

    module: str                      # the module that owns the nodes
    chain: list[str]                 # modules in data order, ``module`` among them
    position: int = -1               # graph index of the node producing its last compared output
    error: float | None = None
    passed: bool | None = None


def localise(model: nn.Module, spec: CallSpec, onnx_path: str, tolerances, *, strip_prefix: str | None = None,
             feeds=None) -> dict[str, Any]:
    """The localisation as JSON-safe evidence: ``first_divergent_module`` (a module path, or None
    with ``first_divergent_module_reason``) and details. ``feeds(session)`` builds the ORT feed."""
    try:
        return _Localiser(model, spec, onnx_path, tolerances, strip_prefix, feeds).run()
    except _Unmappable as exc:
        return {"first_divergent_module": None, "first_divergent_module_reason": str(exc)}


class _Unmappable(Exception):
    """Localisation cannot be done; the message says why, for the report."""


class _Localiser:
    def __init__(self, model, spec, onnx_path, tolerances, strip_prefix, feeds):
        self.model, self.spec, self.path = model, spec, onnx_path
        self.tolerances, self.strip, self.feeds = tolerances or {}, strip_prefix, feeds

    # -- steps -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        import onnx

        if isinstance(self.model, torch.jit.ScriptModule):
            raise _Unmappable("a TorchScript module runs no Python hooks, so its submodules' outputs "
                              "cannot be recorded")
        try:
            proto = onnx.load(self.path)
        except Exception as exc:
            raise _Unmappable(f"the ONNX file could not be read back ({type(exc).__name__})") from exc
        self.nodes = list(proto.graph.node)
        self.source = self._scopes()
        modules = dict(self.model.named_modules())
        known = {s for s in self.scopes if s is not None}
        if not known:
            raise _Unmappable("the ONNX nodes carry no module scopes (neither TorchScript-style node names "
                              "nor dynamo name_scopes metadata), so they cannot be mapped to modules")
        if not known & set(modules):
            self._strip_wrapper(known, set(modules))
        self.boundaries = self._boundaries(proto.graph, [name for name in modules if name])
        self.calls = self._record(modules)
        self.units = self._units(modules)
        if not self.units:
            raise _Unmappable("no module with ONNX nodes of its own is called exactly once with tensor outputs")
        self.values = self._run_ort(proto)
        del proto
        self._compare()
        if not self.compared:
            raise _Unmappable("no module output could be paired with an ONNX tensor of the same shape")
        return self._verdict(modules)

    def _scopes(self) -> str:
        """Each node's module path (None: top-level code), and where the paths were read."""
        self.scopes = [node_module(node, self.strip) for node in self.nodes]
        if any(prop.key == _NAME_SCOPES for node in self.nodes for prop in node.metadata_props):
            return "dynamo exporter metadata (pkg.torch.onnx.name_scopes)"
        return "node names (TorchScript exporter scopes)"

    def _strip_wrapper(self, known: set[str], modules: set[str]) -> None:
        """A file exported from a wrapper around the model (``Wrapper(net=model)``): every scope
        starts with the same attribute name; without it the scopes are the model's own paths."""
        firsts = {scope.split(".", 1)[0] for scope in known}
        if len(firsts) == 1:
            prefix = firsts.pop()
            strip = f"{self.strip}.{prefix}" if self.strip else prefix
            scopes = [node_module(node, strip) for node in self.nodes]
            if {s for s in scopes if s is not None} & modules:
                self.scopes, self.strip = scopes, strip
                return
        raise _Unmappable("the module scopes recorded in the ONNX file match none of the model's module "
                          "paths (was it exported from another wrapper or model class?)")

    def _boundaries(self, graph, names: list[str]) -> dict[str, _Boundary]:
        graph_outputs = {o.name for o in graph.output}
        constants = {init.name for init in graph.initializer}
        self.graph_inputs = {i.name for i in graph.input} - constants
        producer: dict[str, int] = {}
        consumers: dict[str, list[int]] = {}
        for index, node in enumerate(self.nodes):
            if not [name for name in node.input if name]:   # Constant and other input-less nodes
                constants.update(o for o in node.output if o)
            for name in node.output:
                if name:
                    producer[name] = index
            for name in node.input:
                if name:
                    consumers.setdefault(name, []).append(index)
        self.producer = producer
        out: dict[str, _Boundary] = {}
        for name in names:
            members = [i for i, scope in enumerate(self.scopes)
                       if scope is not None and (scope == name or scope.startswith(name + "."))]
            if not members:
                continue
            inside = set(members)
            b = _Boundary(nodes=members)
            for i in members:
                for tensor in self.nodes[i].input:
                    if tensor and tensor not in constants and producer.get(tensor) not in inside \
                            and tensor not in b.inputs:
                        b.inputs.append(tensor)
                for tensor in self.nodes[i].output:
                    if tensor and tensor not in constants and (
                            tensor in graph_outputs or any(c not in inside for c in consumers.get(tensor, ()))):
                        b.outputs.append(tensor)
            out[name] = b
        return out

    def _record(self, modules: dict[str, nn.Module]) -> dict[str, _Call]:
        """Inputs and outputs of every module on one eval pass (copies: later in-place ops must
        not change what was recorded). Originals are kept alive during the pass so that their
        ids stay unique, which is how a module's input is recognised as another's output."""
        calls: dict[str, _Call] = {name: _Call(type(m).__name__) for name, m in modules.items()}
        alive: list[torch.Tensor] = []

        def tensors(value) -> list[torch.Tensor]:
            return [t for _, t in flatten_outputs(value) if t.is_floating_point()]

        def pre(name):
            def hook(module, args, kwargs):
                call = calls[name]
                call.calls += 1
                if call.calls == 1:
                    found = tensors(list(args) + list(kwargs.values()))
                    alive.extend(found)
                    call.inputs = [(id(t), t.detach().clone()) for t in found]
            return hook

        def post(name):
            def hook(module, args, kwargs, output):
                call = calls[name]
                if call.calls == 1:
                    found = tensors(output)
                    alive.extend(found)
                    call.outputs = [(id(t), t.detach().clone()) for t in found]
            return hook

        handles = []
        try:
            for name, module in modules.items():
                handles.append(module.register_forward_pre_hook(pre(name), with_kwargs=True))
                handles.append(module.register_forward_hook(post(name), with_kwargs=True))
            args, kwargs = self.spec.rebuild([t.clone() for t in self.spec.tensors])
            with torch.no_grad():
                self.model(*args, **kwargs)
        except Exception as exc:  # the user's forward, or a module that rejects hooks
            text = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            raise _Unmappable(f"the forward pass with recording hooks failed: {text}") from exc
        finally:
            for handle in handles:
                handle.remove()
            alive.clear()
        return calls

    def _units(self, modules: dict[str, nn.Module]) -> list[_Unit]:
        """Modules with ONNX nodes, called once, with their node-less leaf neighbours folded in."""
        nodeless = {name for name, m in modules.items() if name and name not in self.boundaries
                    and not list(m.children()) and self.calls[name].calls == 1
                    and len(self.calls[name].outputs) == 1}
        by_input: dict[int, str] = {}
        by_output: dict[int, str] = {}
        for name in nodeless:
            call = self.calls[name]
            for ident, _ in call.inputs:
                by_input.setdefault(ident, name)
            by_output.setdefault(call.outputs[0][0], name)
        units = []
        for name in self.boundaries:
            call = self.calls.get(name)
            if call is None or call.calls != 1 or not call.outputs:
                continue
            chain = [name]
            while True:   # node-less modules reading this unit's single output
                outs = self.calls[chain[-1]].outputs
                nxt = by_input.get(outs[0][0]) if len(outs) == 1 else None
                if nxt is None or nxt in chain:
                    break
                chain.append(nxt)
            while True:   # node-less modules producing this unit's single input
                ins = self.calls[chain[0]].inputs
                prev = by_output.get(ins[0][0]) if len(ins) == 1 else None
                if prev is None or prev in chain:
                    break
                chain.insert(0, prev)
            units.append(_Unit(name, chain))
        return units

    def _run_ort(self, proto) -> dict[str, np.ndarray]:
        """One ORT run of a copy of the graph that also returns every boundary tensor."""
        import onnx

        from evalguard.checks.onnx import runtime as onnx_runtime

        wanted = []
        existing = {o.name for o in proto.graph.output}
        graph_inputs = {i.name for i in proto.graph.input}
        for b in self.boundaries.values():
            for tensor in b.inputs + b.outputs:
                if tensor not in existing and tensor not in graph_inputs and tensor in self.producer \
                        and tensor not in wanted:
                    wanted.append(tensor)
        for tensor in wanted:
            proto.graph.output.append(onnx.ValueInfoProto(name=tensor))
        if proto.ByteSize() > MAX_BYTES:
            raise _Unmappable("the ONNX file is over 2 GB, too large for an in-memory copy with extra outputs")
        try:
            session = onnx_runtime.session(proto.SerializeToString(), label=" (localising)")
            feed = self.feeds(session) if self.feeds else onnx_runtime.feeds(session, self.spec.names,
                                                                             self.spec.tensors)
            names = [o.name for o in session.get_outputs()]
            values = dict(zip(names, onnx_runtime.run(session, feed)))
        except Exception as exc:
            raise _Unmappable(f"ONNX Runtime could not run the graph with module outputs exposed: "
                              f"{onnx_runtime.short(exc)}") from exc
        values.update(feed)
        return values

    # -- comparison ------------------------------------------------------------------------
    def _pairs(self, onnx_names: list[str], torch_tensors: list[torch.Tensor]):
        """(onnx name, ONNX value, PyTorch tensor) for each ONNX tensor whose shape matches
        exactly one PyTorch tensor (and no other ONNX tensor claims that one)."""
        pairs, used = [], set()
        for name in onnx_names:
            value = self.values.get(name)
            if value is None or value.dtype.kind != "f":
                continue
            same = [i for i, t in enumerate(torch_tensors) if tuple(t.shape) == tuple(value.shape)]
            if len(same) == 1 and same[0] not in used:
                used.add(same[0])
                pairs.append((name, value, torch_tensors[same[0]]))
        return pairs

    def _diff(self, name: str, pairs) -> tuple[float | None, bool | None]:
        """(largest abs error, passed) over the pairs; (None, None) without pairs."""
        if not pairs:
            return None, None
        worst, passed = 0.0, True
        for onnx_name, value, tensor in pairs:
            atol, rtol = onnx_compare.tolerance(name, onnx_name, tensor.dtype, self.tolerances)
            error, ok = lean_diff(value, tensor, atol, rtol)
            worst, passed = max(worst, error), passed and ok
        return worst, passed

    def _compare(self) -> None:
        for unit in self.units:
            outputs = [t for _, t in self.calls[unit.chain[-1]].outputs]
            pairs = self._pairs(self.boundaries[unit.module].outputs, outputs)
            unit.error, unit.passed = self._diff(unit.module, pairs)
            unit.position = max((self.producer.get(name, -1) for name, _, _ in pairs), default=-1)
        self.compared = sorted((u for u in self.units if u.passed is not None),
                               key=lambda u: (u.position, -u.module.count("."), u.module))

    def _inputs_match(self, module: str, chain_start: str | None = None) -> tuple[bool | None, float | None]:
        """Whether a module's ONNX boundary inputs match its PyTorch inputs (None: not comparable)."""
        call = self.calls.get(chain_start or module)
        if call is None or call.calls != 1:
            return None, None
        if module == "":
            return True, 0.0   # the graph inputs are the model's inputs
        boundary = self.boundaries.get(module)
        if boundary is None:
            return None, None
        if boundary.inputs and set(boundary.inputs) <= self.graph_inputs:
            return True, 0.0   # fed straight from the model's inputs (token ids, say)
        pairs = self._pairs(boundary.inputs, [t for _, t in call.inputs])
        error, passed = self._diff(module, pairs)
        return passed, error

    def _verdict(self, modules: dict[str, nn.Module]) -> dict[str, Any]:
        base = {"mapped_by": self.source, "modules_compared": len(self.compared)}
        first = next((u for u in self.compared if not u.passed), None)
        if first is None:
            return {**base, "first_divergent_module": None,
                    "first_divergent_module_reason": f"all {len(self.compared)} module outputs that could be "
                                                     "mapped to ONNX tensors match; the difference starts after "
                                                     "them, in code outside any compared module"}
        inputs_ok, input_error = self._inputs_match(first.module, first.chain[0])
        module, own_code = first.chain[0], False
        if inputs_ok is False:
            # The inputs already differ: the divergence began in code no compared module owns.
            # The nearest enclosing module whose inputs still match is where it starts.
            own_code = True
            module, inputs_ok, input_error = "", True, 0.0   # the root: fed the model's own inputs
            for ancestor in _ancestors(first.module)[::-1]:
                ok, error = self._inputs_match(ancestor)
                if ok:
                    module, inputs_ok, input_error = ancestor, ok, error
                    break
        nodes = self._nodes_of(module, own_code, first)
        evidence = {
            **base, "first_divergent_module": module or None,
            "module_type": type(modules[module]).__name__ if module in modules else None,
            "path": self._path(module, first),
            "output_max_abs_error": first.error, "input_max_abs_error": input_error,
            "inputs_match": inputs_ok, "onnx_nodes": nodes[:MAX_NODES], "onnx_node_count": len(nodes),
        }
        folded = [m for m in first.chain if m != module]
        if folded and not own_code:
            evidence["folded"] = folded
        if own_code:
            evidence["compared_output"] = first.module
            evidence["note"] = (f"{first.module}'s inputs already differ, so the divergence starts in "
                                f"{'the model' if not module else module}'s own forward code, outside the "
                                "submodules that could be compared")
        else:
            inner = [u.module for u in self.compared if u.module.startswith(first.module + ".")]
            if inner and all(u.passed for u in self.compared if u.module in inner):
                evidence["note"] = (f"its compared submodules ({', '.join(inner[:4])}"
                                    f"{', ...' if len(inner) > 4 else ''}) match: the difference is in "
                                    f"{first.module}'s own forward code")
        if not module:
            evidence["first_divergent_module_reason"] = (
                "the divergence starts in the model's top-level forward code, outside any submodule "
                "(see onnx_nodes)")
        return onnx_compare.rounded(evidence)

    def _nodes_of(self, module: str, own_code: bool, first: _Unit) -> list[dict[str, str]]:
        """The ONNX nodes a module maps to: the first divergent unit's nodes, or for a module's own
        code the nodes directly in its scope (not in a submodule) up to the divergent output."""
        if own_code:
            wanted = module or None
            indices = [i for i, s in enumerate(self.scopes) if s == wanted and i <= first.position]
        else:
            indices = self.boundaries[first.module].nodes
        return [{"name": self.nodes[i].name, "op_type": self.nodes[i].op_type} for i in indices
                if self.nodes[i].op_type != "Constant"]

    def _path(self, module: str, first: _Unit) -> list[dict[str, Any]]:
        """Root to the divergent module: each step's type and whether its output diverges."""
        by_module = {m: u for u in self.units for m in u.chain}
        steps = []
        for name in _ancestors(module) + ([module] if module else []):
            unit = by_module.get(name)
            status = "not compared" if unit is None or unit.passed is None else (
                "matches" if unit.passed else "diverges")
            call = self.calls.get(name)
            steps.append({"module": name, "type": call.type if call else None, "status": status,
                          "max_abs_error": unit.error if unit is not None else None})
        return steps


def lean_diff(actual, expected, atol: float, rtol: float) -> tuple[float, bool]:
    """(largest absolute error, passed) under EG401's element rule (an element fails when its
    error exceeds both atol and rtol * |expected|), without the report statistics of
    ``compare.row``: those took 13 of the 20 s that localising BERT-base (190 modules) cost.
    In numpy (single-threaded: torch's many small multi-threaded ops stalled on a busy machine).
    Non-finite values match only the same non-finite value."""
    a = np.asarray(actual.detach().cpu() if isinstance(actual, torch.Tensor) else actual, dtype=np.float64)
    e = np.asarray(expected.detach().cpu().double() if isinstance(expected, torch.Tensor) else expected,
                   dtype=np.float64)
    if a.size == 0:
        return 0.0, True
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a - e)
        err[(a == e) | (np.isnan(a) & np.isnan(e))] = 0.0
        err[np.isnan(err)] = np.inf
        failed = (err > atol) & (err > rtol * np.abs(e))
    return float(err.max()), not bool(failed.any())


def _ancestors(path: str) -> list[str]:
    """``a.b.c`` -> ``['a', 'a.b']`` (outermost first, the root left out)."""
    parts = path.split(".") if path else []
    return [".".join(parts[:i]) for i in range(1, len(parts))]
