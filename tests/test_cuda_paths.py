"""The --device cuda paths. The settings logic runs everywhere; the model tests need a GPU
(`pytest -m cuda`) and skip with the reason elsewhere."""
from __future__ import annotations

import pytest
import torch

from evalguard.checks import running

BACKENDS = torch.backends


def _flags():
    return (BACKENDS.cuda.matmul.allow_tf32, BACKENDS.cudnn.allow_tf32, BACKENDS.cudnn.benchmark,
            BACKENDS.cudnn.deterministic)


def test_exact_kernels_turn_tf32_and_autotuning_off_on_cuda_and_put_them_back():
    before = _flags()
    BACKENDS.cudnn.allow_tf32, BACKENDS.cudnn.benchmark = True, True
    try:
        with running.exact_kernels("cuda"):
            assert _flags() == (False, False, False, True)
        assert (BACKENDS.cudnn.allow_tf32, BACKENDS.cudnn.benchmark) == (True, True)
        with running.exact_kernels("cpu"):
            assert (BACKENDS.cudnn.allow_tf32, BACKENDS.cudnn.benchmark) == (True, True)
    finally:
        (BACKENDS.cuda.matmul.allow_tf32, BACKENDS.cudnn.allow_tf32, BACKENDS.cudnn.benchmark,
         BACKENDS.cudnn.deterministic) = before


@pytest.mark.cuda
@pytest.mark.realmodel
def test_clean_vit_on_cuda_is_not_batch_dependent():
    """On an H200, cuDNN's default TF32 convolution made a clean ViT's rows differ by 1.5e-3
    between batch sizes (EG104 at embeddings.patch_embeddings.projection) before the passes ran
    with exact kernels."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to PyTorch")
    transformers = pytest.importorskip("transformers")
    import evalguard

    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=128)
    model = transformers.ViTModel(config).eval()
    pixels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    report = evalguard.audit(model, {"pixel_values": pixels}, select=["EG1"], device="cuda")
    assert [f.rule for f in report.findings] == []
    assert report.targets[0].coverage["EG104"].status == "passed"
