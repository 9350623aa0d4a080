"""ONNX family: export the eval-mode model (or take --onnx FILE) and compare ONNX Runtime
with PyTorch (EG401), training-mode ops in the graph (EG403), another batch size (EG404),
the CUDA provider (EG405); an export that fails is EG402. ``--backends`` adds other deployment
backends against eager PyTorch (EG406 outputs differ, EG407 cannot build). Entry: ``check.run``."""
from evalguard.checks.spec import CheckSpec
from evalguard.subject import MODEL_KINDS, ONNX_KINDS

CHECK = CheckSpec("onnx-parity", ("EG401", "EG402", "EG403", "EG404", "EG405", "EG406", "EG407"),
                  MODEL_KINDS | ONNX_KINDS,
                  "evalguard.checks.onnx.check:run", enabled_by="onnx_enabled",
                  disabled_reason="ONNX checks turned off (--no-onnx)")

#: Deployment backends for --backends; onnxruntime is EG401's own session (the default).
BACKENDS = ("onnxruntime", "ort-optimized", "torch-compile", "aoti", "torchscript", "openvino", "openvino-onnx",
            "ort-int8", "executorch")


def parse_backends(text: str | None) -> tuple[str, ...]:
    """``"onnxruntime,torchscript"`` -> the names in the order given; ValueError on unknown ones."""
    names = [n.strip() for n in (text or "onnxruntime").split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend {unknown[0]!r} (known: {', '.join(BACKENDS)})")
    return tuple(dict.fromkeys(names)) or ("onnxruntime",)
