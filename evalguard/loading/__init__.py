"""Turn a target path (or a ``--model`` factory) into an ``AuditSubject``.

Contract used by the engine: ``load_target(path, options) -> AuditSubject``. It raises
``TargetError`` for a file that cannot be audited and ``RefusedTarget`` (carrying
EG901/EG902 findings) for a file that was refused without being loaded.
"""
from __future__ import annotations

from pathlib import Path

from evalguard.errors import TargetError
from evalguard.subject import AuditOptions, AuditSubject, ExampleInputs


def default_inputs_resolver(options: AuditOptions, model=None, extra_hint: str = ""):
    """Inputs from the command line, else inferred from the model, else a clear error."""

    def resolve() -> ExampleInputs:
        from evalguard.loading import inputs as inputs_mod

        if options.example_inputs_file:
            return inputs_mod.load_example_inputs(options.example_inputs_file)
        if options.input_shapes:
            return inputs_mod.inputs_from_shapes(options.input_shapes, options.input_dtype, seed=options.seed)
        inferred = None
        if model is not None:
            from evalguard.loading.infer_inputs import infer_inputs

            inferred = infer_inputs(model, options)
        if options.onnx_file and options.onnx_enabled and not _image_list(inferred):
            from evalguard.loading.onnx_file import onnx_inputs_for

            return onnx_inputs_for(options.onnx_file, options, hint=inferred)
        if inferred is not None:
            return inputs_mod.with_dtype(inferred, options.input_dtype, seed=options.seed)
        raise TargetError(f"cannot infer inputs for {extra_hint or 'the model'}; "
                          "pass --input-shape or --example-inputs")

    return resolve


def _image_list(inputs) -> bool:
    from evalguard.loading.infer_inputs import takes_image_list

    return takes_image_list(inputs)


def load_factory_subject(options: AuditOptions) -> AuditSubject:
    from evalguard.facts import LoadFacts
    from evalguard.loading.factory import build_model
    from evalguard.loading.subjects import model_size

    model = build_model(options.model_factory)
    model_class = f"{type(model).__module__}.{type(model).__qualname__}"
    return AuditSubject(path=options.model_factory, kind="factory", model=model,
                        load=LoadFacts(format="factory", model_class=model_class, saved_training=model.training,
                                       mode_source="the mode the factory returned it in", **model_size(model)),
                        inputs_resolver=default_inputs_resolver(options, model, options.model_factory))


def factory_used(result, spec: str) -> bool:
    """Whether a target's audit took ``--model spec`` as its architecture (or tried to)."""
    load = result.facts.get("load") if result.facts else None
    if load is not None and load.weights is not None and load.weights.architecture == f"--model {spec}":
        return True
    detail = result.detail or ""
    return f"--model {spec}" in detail or detail.startswith("--model:")


def load_source_subject(path: Path) -> AuditSubject:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TargetError(f"{path}: not a UTF-8 Python source file") from None
    if path.suffix == ".ipynb":      # the code cells joined, magics blanked (checks/source/notebook.py)
        from evalguard.checks.source.notebook import code_of

        text = code_of(text, str(path))
    return AuditSubject(path=str(path), kind="python-source", source_text=text)


def load_target(path: str, options: AuditOptions) -> AuditSubject:
    target = Path(path)
    if not target.exists():
        raise TargetError(f"{path}: no such file or directory")
    if target.is_dir():
        from evalguard.loading.discover import is_model_folder

        if not is_model_folder(target):
            raise TargetError(f"{path}: is a directory with no model files (checkpoints, .pt2, .onnx, "
                              ".safetensors, Hugging Face folders) or Python sources")
        from evalguard.loading.formats import load_model_file

        return load_model_file(target, options)
    if target.suffix in (".py", ".ipynb"):
        return load_source_subject(target)
    from evalguard.loading.formats import load_model_file

    return load_model_file(target, options)
