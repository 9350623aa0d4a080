"""``torch.export`` programs (.pt2): vet the archive statically, then ``torch.export.load``."""
from __future__ import annotations

from pathlib import Path

from evalguard.errors import InternalError, TargetError
from evalguard.loading.allowlist import AllowList
from evalguard.loading.safe_load import refuse_container, trial_load, vet
from evalguard.loading.sniff import Sniffed
from evalguard.subject import AuditOptions, AuditSubject, ExampleInputs


def load_exported_program(path: Path, sniffed: Sniffed, options: AuditOptions) -> AuditSubject:
    import torch

    from evalguard.loading.export_scan import scan_pt2
    from evalguard.loading.formats import open_archive
    from evalguard.loading.subjects import model_subject

    scan = open_archive(path, scan_pt2)
    if scan.refusal:
        raise refuse_container(path, scan.refusal, kind="exported-program")
    vet(path, scan.refs, AllowList(options.trust_modules), kind="exported-program", problems=scan.problems,
        unsafe_ops=scan.unsafe_ops)
    trial_load(path, "exported-program", kind="exported-program")
    try:
        program = torch.export.load(str(path))
        unlifted = program.module()
    except Exception as exc:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise TargetError(f"{path}: torch.export program cannot be loaded: {text}") from exc
    model = switchable(unlifted)
    info = {"format": "torch.export program (.pt2)", "user_inputs": list(program.graph_signature.user_inputs)}
    # The unlifted module always says training=True and refuses eval(); the truth is in its ops.
    training_ops = training_mode_ops(program)
    info["saved_training"] = bool(training_ops)
    if training_ops:
        info["training_ops"] = training_ops
    return model_subject(path, "exported-program", model, options, info,
                         mode_source="the exported graph (train/eval was fixed at export time)",
                         inputs_resolver=_resolver(program, options, path))


#: Ops whose ``train``/``training`` argument is at this position.
_TRAIN_ARG = {"aten.dropout.default": 2, "aten.native_dropout.default": 2, "aten.feature_dropout.default": 2,
              "aten.alpha_dropout.default": 2, "aten.feature_alpha_dropout.default": 2,
              "aten.batch_norm.default": 5, "aten._native_batch_norm_legit.default": 5,
              "aten.instance_norm.default": 5}
#: The step named in EG900 when the train/eval rewrite of a .pt2 graph breaks.
GRAPH_REWRITE = ".pt2 graph rewrite"


def switchable(module):
    """Give torch.export's unlifted module a working ``train()``/``eval()``.

    torch's unlifted module refuses both (its mode is baked into the graph at export time), so
    neither the rules that need eval mode nor the ONNX comparison could run on a ``.pt2``. The
    graph's training behaviour lives in the ``train``/``training`` argument of its dropout and
    batch-norm ops: ``eval()`` sets each of those to False (dropout off, running statistics),
    ``train()`` puts the graph back exactly as it was exported. Ops that only exist in training
    form (random ops, functional batch norm) are left as they are, so what stays random after
    ``eval()`` is still found (EG103/EG104).
    """
    import types

    import torch.fx

    try:
        exported = [(node, index, node.args[index])
                    for graph_module in module.modules() if isinstance(graph_module, torch.fx.GraphModule)
                    for node in graph_module.graph.nodes
                    if node.op == "call_function" and (index := _TRAIN_ARG.get(str(node.target))) is not None
                    and len(node.args) > index and isinstance(node.args[index], bool)]
    except Exception as exc:  # noqa: BLE001 - evalguard's own rewrite broke: EG900, not the file's fault
        raise InternalError(GRAPH_REWRITE, exc) from exc

    def set_mode(self, mode: bool = True):
        try:
            return _set_mode(self, mode)
        except Exception as exc:  # noqa: BLE001 - evalguard's own rewrite broke: EG900, not the model's fault
            raise InternalError(GRAPH_REWRITE, exc) from exc

    def _set_mode(self, mode: bool):
        for node, index, as_exported in exported:
            args = list(node.args)
            args[index] = as_exported if mode else False
            node.args = tuple(args)
        for graph_module in self.modules():
            graph_module.training = mode
            if isinstance(graph_module, torch.fx.GraphModule):
                graph_module.recompile()
        return self

    module.train = types.MethodType(set_mode, module)
    module.eval = types.MethodType(lambda self: set_mode(self, False), module)
    module.evalguard_switchable = True
    return module


#: Ops that only exist in training mode.
_ALWAYS_TRAINING = {"aten._native_batch_norm_legit_functional.default", "aten.bernoulli.p",
                    "aten.bernoulli_.float"}


def training_mode_ops(program) -> list[str]:
    """Names of graph nodes that behave as in training mode (dropout on, batch statistics)."""
    import torch.fx

    found = []
    for module in program.graph_module.modules():
        if not isinstance(module, torch.fx.GraphModule):
            continue
        for node in module.graph.nodes:
            if node.op != "call_function":
                continue
            target = str(node.target)
            index = _TRAIN_ARG.get(target)
            if target in _ALWAYS_TRAINING or (index is not None and len(node.args) > index
                                               and node.args[index] is True):
                found.append(f"{node.name} ({target})")
    return found


def _resolver(program, options: AuditOptions, path: Path):
    from evalguard.loading import default_inputs_resolver

    fallback = default_inputs_resolver(options, None, str(path))

    def resolve() -> ExampleInputs:
        if options.example_inputs_file or options.input_shapes:
            return fallback()
        saved = getattr(program, "example_inputs", None)
        if saved is not None:
            import torch.utils._pytree as pytree

            args, kwargs = pytree.tree_map(lambda t: t.clone() if hasattr(t, "clone") else t, saved)
            return ExampleInputs(args=tuple(args), kwargs=dict(kwargs),
                                 source="example inputs saved in the exported program")
        return _from_placeholders(program, options)

    return resolve


def _from_placeholders(program, options: AuditOptions) -> ExampleInputs:
    """Shapes of the user inputs' fake tensors; symbolic dimensions become 2."""
    from evalguard.loading.inputs import make_tensor

    wanted = set(program.graph_signature.user_inputs)
    args = []
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in wanted:
            continue
        value = node.meta.get("val")
        if value is None or not hasattr(value, "shape"):
            raise TargetError(f"cannot infer input {node.name!r} of the exported program; pass --example-inputs")
        shape = tuple(d if isinstance(d, int) else 2 for d in value.shape)
        dtype = str(value.dtype).replace("torch.", "")
        args.append(make_tensor(shape, dtype, high=2, seed=options.seed + len(args)))
    return ExampleInputs(args=tuple(args), source="shapes of the exported program's inputs (dynamic dims = 2)")
