"""Example inputs when none were given: from what a transformers model says it takes
(``hf_inputs``), else guessed from a model's first layer, for the simple cases only."""
from __future__ import annotations

from evalguard.subject import AuditOptions, ExampleInputs

_CONV_DIMS = {"Conv1d": 1, "Conv2d": 2, "Conv3d": 3}


def _layer_kind(module) -> str:
    """The nn class name, also for TorchScript modules (which keep it as ``original_name``)."""
    from torch import nn

    for cls in (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d):
        if isinstance(module, cls):
            return cls.__name__
    if type(module).__name__ == "Linear" and isinstance(getattr(module, "in_features", None), int):
        return "Linear"   # torch.ao's quantized Linear (its weight is packed, in_features is kept)
    name = getattr(module, "original_name", "")
    return name if name in ("Linear", "Embedding", *_CONV_DIMS) else ""


def _size(module, attribute: str, weight_dim: int) -> int:
    """The layer attribute, or the matching weight dimension (traced modules keep only weights)."""
    value = getattr(module, attribute, None)
    if isinstance(value, int):
        return value
    if attribute == "in_channels" and getattr(module, "groups", 1) != 1:
        raise AttributeError("grouped convolution without in_channels")
    return int(module.weight.shape[weight_dim])


def _float_dtype(module) -> str:
    """float16/bfloat16 when the layer's weight is, else float32 (as before: --input-dtype picks others)."""
    weight = getattr(module, "weight", None)
    dtype = getattr(weight, "dtype", None)
    name = str(dtype).replace("torch.", "")
    return name if name in ("float16", "bfloat16") else "float32"


def infer_inputs(model, options: AuditOptions) -> ExampleInputs | None:
    """transformers models: from their forward signature and config; others: a batch of 2 shaped
    for the first Linear/Embedding/Conv found; None when unsure."""
    from evalguard.loading.hf_inputs import transformers_inputs
    from evalguard.loading.inputs import make_tensor

    from_config = transformers_inputs(model, options.seed)
    if from_config is not None:
        return from_config
    images = detection_inputs(model, options.seed)
    if images is not None:
        return images
    denoiser = diffusers_inputs(model, options.seed)
    if denoiser is not None:
        return denoiser
    batch = 2
    for name, module in model.named_modules():
        kind = _layer_kind(module)
        try:
            if kind == "Linear":
                shape, dtype, high = (batch, _size(module, "in_features", 1)), "float32", 2
            elif kind == "Embedding":
                shape, dtype, high = (batch, 8), "int64", _size(module, "num_embeddings", 0)
            elif kind in _CONV_DIMS:
                shape = (batch, _size(module, "in_channels", 1)) + (32,) * _CONV_DIMS[kind]
                dtype, high = "float32", 2
            else:
                continue
        except (AttributeError, TypeError, RuntimeError, IndexError):
            continue  # a compiled layer that kept neither the attribute nor its weight
        if dtype == "float32":
            dtype = _float_dtype(module)   # a float16/bfloat16 model takes inputs of its own dtype
        tensor = make_tensor(shape, dtype, high=high, seed=options.seed)
        return ExampleInputs(args=(tensor,), source=f"inferred from first layer {name or 'model'} ({kind})")
    return None


#: torchvision's detection models (Faster/Mask/Keypoint R-CNN, RetinaNet, FCOS, SSD, SSD-lite)
#: normalise and resize their inputs with this transform; they take a list of images.
DETECTION_TRANSFORM = "GeneralizedRCNNTransform"
IMAGES = 2
IMAGE_SIZE = 128


def detection_inputs(model, seed: int = 0) -> ExampleInputs | None:
    """A list of 2 RGB images in [0, 1] for a torchvision-style detection model (one whose
    ``transform`` is a GeneralizedRCNNTransform); None for other models. The transform resizes
    every image to the model's own size, so a small image is enough."""
    import torch

    transform = getattr(model, "transform", None)
    if type(transform).__name__ != DETECTION_TRANSFORM:
        return None
    generator = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, IMAGE_SIZE, IMAGE_SIZE, generator=generator) for _ in range(IMAGES)]
    return ExampleInputs(args=(images,), source=f"a list of {IMAGES} images 3x{IMAGE_SIZE}x{IMAGE_SIZE} in [0, 1], "
                                                f"for a detection model taking a list of images "
                                                f"({type(model).__name__}, whose {DETECTION_TRANSFORM} resizes them)")


def takes_image_list(inputs: ExampleInputs | None) -> bool:
    """True for a detection model's list of images: they stay the inputs also with --onnx FILE
    (whose graph has one input per image, not one list)."""
    return inputs is not None and any(isinstance(a, list) and a and all(hasattr(t, "shape") for t in a)
                                      for a in inputs.args)


def diffusers_inputs(model, seed: int = 0) -> ExampleInputs | None:
    """A diffusers UNet's ``sample`` (batch 2, ``in_channels``, ``sample_size``), a ``timestep`` per
    sample and, for a conditional UNet, ``encoder_hidden_states`` of its ``cross_attention_dim``;
    None for other models."""
    import inspect

    import torch

    config = getattr(model, "config", None)
    if type(model).__module__.split(".")[0] != "diffusers" or config is None:
        return None
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    channels, size = getattr(config, "in_channels", None), getattr(config, "sample_size", None)
    size = size[0] if isinstance(size, (list, tuple)) else size
    if "sample" not in parameters or "timestep" not in parameters or not isinstance(channels, int) \
            or not isinstance(size, int):
        return None
    generator = torch.Generator().manual_seed(seed)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    kwargs = {"sample": torch.randn(2, channels, size, size, generator=generator).to(dtype),
              "timestep": torch.tensor([10, 500])}
    what = f"sample 2x{channels}x{size}x{size}, timestep per sample"
    cross = getattr(config, "cross_attention_dim", None)
    if "encoder_hidden_states" in parameters and isinstance(cross, int):
        kwargs["encoder_hidden_states"] = torch.randn(2, 4, cross, generator=generator).to(dtype)
        what += f", encoder_hidden_states 2x4x{cross}"
    return ExampleInputs(kwargs=kwargs, source=f"from {type(model).__name__}'s forward signature and config ({what})")
