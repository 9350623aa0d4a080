"""Example inputs for transformers models, from what the model says it takes.

The model's ``forward`` signature names its inputs; its config sizes them: token ids in
``[0, vocab_size)`` (the text config's for multimodal models), pixels of the vision config's
``image_size`` and ``num_channels``, log-mel features of the fixed length an audio encoder
expects (``num_mel_bins`` x ``2 * max_source_positions`` for Whisper), raw audio long enough
for a convolutional feature encoder (Wav2Vec2 and relatives), ``decoder_input_ids`` for
encoder-decoders, and an ``attention_mask`` next to token ids (decoder exports need it). A
``preprocessor_config.json`` saved beside the config (the feature extractor's or image
processor's) wins where it states a size. Only the inputs a family needs are made; optional
extras (labels, caches, token types) keep their defaults.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from evalguard.subject import ExampleInputs

BATCH = 2
SEQUENCE = 8
#: Pixel size for vision models whose config states none (ResNet-style): enough for 5 stride-2 stages.
DEFAULT_IMAGE = 64
#: Frames a convolutional audio encoder should output from the raw audio we make.
AUDIO_FRAMES = 16


def _sub(config, *names):
    """The first nested config among ``names`` (text_config, vision_config, ...), else None."""
    for name in names:
        value = getattr(config, name, None)
        if value is not None and not isinstance(value, (int, float, str, bool)):
            return value
    return None


def _get(configs, name: str, default=None):
    for config in configs:
        value = getattr(config, name, None) if config is not None else None
        if value is not None:
            return value
    return default


def _preprocessor(config) -> dict:
    """The folder's ``preprocessor_config.json`` (found through the config's ``name_or_path``)."""
    folder = getattr(config, "name_or_path", None) or getattr(config, "_name_or_path", None)
    if not folder:
        return {}
    path = Path(folder) / "preprocessor_config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _side(value) -> int | None:
    """An image size from config/preprocessor forms: 32, [32, 32], {"height": 32}, {"shortest_edge": 32}."""
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], int):
        return value[0]
    if isinstance(value, dict):
        for key in ("height", "shortest_edge", "width"):
            if isinstance(value.get(key), int):
                return value[key]
    return None


class _Maker:
    def __init__(self, model, seed: int):
        import torch

        self.torch = torch
        self.config = model.config
        self.seed = seed
        self.float_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        self.text = _sub(self.config, "text_config", "encoder", "decoder") if self._multimodal() else None
        self.vision = _sub(self.config, "vision_config", "encoder")
        self.audio = _sub(self.config, "audio_config", "encoder")
        self.pre = _preprocessor(self.config)
        self.notes: list[str] = []

    def _multimodal(self) -> bool:
        return any(getattr(self.config, name, None) is not None
                   for name in ("text_config", "vision_config", "encoder", "decoder", "audio_config"))

    def _generator(self, offset: int):
        return self.torch.Generator().manual_seed(self.seed + offset)

    # token ids -------------------------------------------------------------------------------
    def _vocab(self, *configs) -> int | None:
        vocab = _get([*configs, self.config], "vocab_size")
        return vocab if isinstance(vocab, int) and vocab > 0 else None

    def _length(self, configs, wanted: int = SEQUENCE) -> int:
        limit = _get([*configs, self.config], "max_position_embeddings")
        if isinstance(limit, int) and limit > 2:
            wanted = min(wanted, limit - 2)   # RoBERTa-style positions start after the padding id
        return max(wanted, 2)

    def ids(self, name: str, configs, offset: int, length: int | None = None):
        vocab = self._vocab(*configs)
        if vocab is None:
            return None
        special = [_get([*configs, self.config], key) for key in ("pad_token_id", "bos_token_id",
                                                                 "eos_token_id", "decoder_start_token_id")]
        special = [s for s in special if isinstance(s, int)]
        low = max(special) + 1 if special and max(special) + 1 < vocab // 2 else 0
        length = length or self._length(configs)
        tensor = self.torch.randint(low, vocab, (BATCH, length), generator=self._generator(offset))
        self.notes.append(f"{name} in [{low}, {vocab})")
        return tensor

    def attention_mask(self, ids):
        self.notes.append("attention_mask of ones")
        return self.torch.ones_like(ids)

    # pixels, audio ---------------------------------------------------------------------------
    def pixels(self, offset: int):
        configs = [self.vision, self.config]
        size = (_side(self.pre.get("crop_size")) or _side(self.pre.get("size"))
                or _side(_get(configs, "image_size")))
        if size is None:
            size = DEFAULT_IMAGE
            self.notes.append(f"pixel_values {size}x{size} (the config states no image size)")
        else:
            self.notes.append(f"pixel_values {size}x{size}")
        channels = _get(configs, "num_channels", 3)
        return self.torch.randn(BATCH, channels, size, size, generator=self._generator(offset)).to(self.float_dtype)

    def features(self, offset: int):
        """Log-mel features: Whisper-style (batch, mels, frames) of the one length the encoder accepts,
        or Speech2Text-style (batch, frames, features)."""
        configs = [self.audio, self.config]
        mels = _get(configs, "num_mel_bins")
        if isinstance(mels, int):
            frames = self.pre.get("nb_max_frames")
            positions = _get(configs, "max_source_positions")
            if not isinstance(frames, int) and isinstance(positions, int):
                frames = 2 * positions   # two convolutions, the second with stride 2
            if isinstance(frames, int):
                mels = self.pre.get("feature_size", mels)
                self.notes.append(f"input_features {mels} mel bins x {frames} frames")
                return self.torch.randn(BATCH, mels, frames, generator=self._generator(offset)).to(self.float_dtype)
        per_channel = _get(configs, "input_feat_per_channel")
        if isinstance(per_channel, int):
            width = per_channel * _get(configs, "input_channels", 1)
            frames = 4 * AUDIO_FRAMES
            self.notes.append(f"input_features {frames} frames x {width}")
            return self.torch.randn(BATCH, frames, width, generator=self._generator(offset)).to(self.float_dtype)
        return None

    def raw_audio(self, offset: int):
        """Raw audio (batch, samples), long enough for the conv feature encoder to give AUDIO_FRAMES frames."""
        configs = [self.audio, self.config]
        kernels, strides = _get(configs, "conv_kernel"), _get(configs, "conv_stride")
        samples = 16000
        if isinstance(kernels, (list, tuple)) and isinstance(strides, (list, tuple)):
            samples = AUDIO_FRAMES
            for kernel, stride in zip(reversed(kernels), reversed(strides)):
                samples = (samples - 1) * stride + kernel
        self.notes.append(f"input_values of {samples} raw audio samples")
        return self.torch.randn(BATCH, samples, generator=self._generator(offset)).to(self.float_dtype)


def transformers_inputs(model, seed: int = 0) -> ExampleInputs | None:
    """Keyword inputs for a transformers model (anything with ``config`` and ``main_input_name``)."""
    config = getattr(model, "config", None)
    main = getattr(model, "main_input_name", None)
    if config is None or not isinstance(main, str):
        return None
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    maker = _Maker(model, seed)
    kwargs: dict[str, Any] = {}
    text_configs = [maker.text] if maker.text is not None else []

    def wants(name: str) -> bool:
        return name in parameters

    if main == "input_ids" or (wants("input_ids") and (wants("pixel_values") or wants("input_features"))
                               and maker.text is not None):
        ids = maker.ids("input_ids", text_configs, 0)
        if ids is None:
            return None
        eos = _get([*text_configs, config], "eos_token_id")
        if isinstance(eos, int) and getattr(config, "is_encoder_decoder", False):
            ids[:, -1] = eos   # encoder inputs end with </s>, as tokenizers make them
        kwargs["input_ids"] = ids
        if wants("attention_mask"):
            kwargs["attention_mask"] = maker.attention_mask(ids)
    if main == "pixel_values" or (wants("pixel_values") and maker.vision is not None and "input_ids" in kwargs):
        kwargs["pixel_values"] = maker.pixels(1)
    if main == "input_features":
        features = maker.features(2)
        if features is None:
            return None
        kwargs["input_features"] = features
    if main == "input_values":
        kwargs["input_values"] = maker.raw_audio(3)
    if not kwargs:
        return None
    if getattr(config, "is_encoder_decoder", False) and wants("decoder_input_ids"):
        decoder = [c for c in (_sub(config, "decoder"),) if c is not None]
        limit = _get([*decoder, config], "max_target_positions")
        length = min(SEQUENCE // 2, limit) if isinstance(limit, int) else SEQUENCE // 2
        ids = maker.ids("decoder_input_ids", decoder, 4, length=length)
        if ids is None:
            return None
        kwargs["decoder_input_ids"] = ids
    described = ", ".join(maker.notes)
    return ExampleInputs(kwargs=kwargs, source=f"from {type(model).__name__}'s forward signature and config "
                                               f"(batch {BATCH}: {described})")
