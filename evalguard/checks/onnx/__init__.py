"""ONNX family: export the eval-mode model (or take --onnx FILE) and compare ONNX Runtime
with PyTorch (EG401), training-mode ops in the graph (EG403), another batch size (EG404),
the CUDA provider (EG405); an export that fails is EG402. Entry: ``check.run``."""
from evalguard.checks.spec import CheckSpec
from evalguard.subject import MODEL_KINDS, ONNX_KINDS

CHECK = CheckSpec("onnx-parity", ("EG401", "EG402", "EG403", "EG404", "EG405"), MODEL_KINDS | ONNX_KINDS,
                  "evalguard.checks.onnx.check:run", enabled_by="onnx_enabled",
                  disabled_reason="ONNX checks turned off (--no-onnx)")
