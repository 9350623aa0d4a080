"""Generation family (``--generate N``): greedy decoding of a transformers language model.

EG408 the exported runtime with its KV cache (an ONNX decoder step with past key values, run in
ONNX Runtime) against eager PyTorch's ``generate``; EG409 PyTorch's cached decoding against the
same model without a cache; EG410 left-padded batched prompts against each prompt alone.
Off unless ``--generate N`` asks for N new tokens per prompt. Entry: ``check.run``.
"""
from evalguard.checks.spec import CheckSpec
from evalguard.subject import MODEL_KINDS

CHECK = CheckSpec("generation", ("EG408", "EG409", "EG410"), MODEL_KINDS,
                  "evalguard.checks.generation.check:run")
