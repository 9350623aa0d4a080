"""Hugging Face ``save_pretrained`` folders: weights (+ optional optimizer.pt) into an architecture.

The architecture comes from ``--model``; without it, from ``config.json`` through the
installed ``transformers`` (the class named in ``architectures``; remote code is never
enabled), switched to eval mode as ``from_pretrained`` would return it.
"""
from __future__ import annotations

import json
from pathlib import Path

from evalguard.errors import TargetError
from evalguard.loading.allowlist import AllowList
from evalguard.subject import AuditOptions, AuditSubject

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
OPTIMIZER_FILE = "optimizer.pt"


def weight_files(folder: Path) -> list[Path]:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    for name in INDEX_FILES:
        index = folder / name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise TargetError(f"{index}: unreadable shard index ({exc})") from None
            for shard in shards:
                if Path(shard).name != shard or not (folder / shard).is_file():
                    raise TargetError(f"{index}: shard {shard!r} is missing")
            return [folder / shard for shard in shards]
    raise TargetError(f"{folder}: is a directory with no model files or Python sources")


def vet_folder(folder: Path, options: AuditOptions) -> None:
    """Every pickle in the folder, loaded or not, must pass the allow-list (EG901/EG902/EG905)."""
    from evalguard.loading.archive import ArchiveRefused
    from evalguard.loading.folder_scan import scan_folder
    from evalguard.loading.safe_load import refuse_container, vet

    try:
        refs, problems = scan_folder(folder)
    except ArchiveRefused as exc:
        raise refuse_container(folder, str(exc), kind="hf-folder") from None
    if problems:
        raise refuse_container(folder, "; ".join(problems[:3]), kind="hf-folder")
    vet(folder, refs, AllowList(options.trust_modules), kind="hf-folder")


def load_state_file(path: Path, options: AuditOptions):
    """One weights file of the folder: safetensors, or a vetted weights-only torch.save."""
    from evalguard.loading.formats import scan_torch_zip
    from evalguard.loading.safe_load import torch_load, vet
    from evalguard.loading.safetensors_file import read_safetensors
    from evalguard.loading.sniff import sniff

    sniffed = sniff(path)
    if sniffed.container == "safetensors":
        return read_safetensors(path)
    if sniffed.container != "zip" or sniffed.layout != "torch-save":
        raise TargetError(f"{path}: expected a torch.save archive or safetensors file")
    refs = scan_torch_zip(path)
    register = vet(path, refs, AllowList(options.trust_modules), kind="hf-folder")
    return torch_load(path, register, mmap=True, trust_modules=options.trust_modules, kind="hf-folder")


def load_hf_folder(folder: Path, options: AuditOptions) -> AuditSubject:
    from evalguard.loading.checkpoint_layouts import (
        describe_optimizer,
        is_optimizer_state,
        is_state_dict,
    )
    from evalguard.loading.subjects import state_dict_subject

    vet_folder(folder, options)
    files = weight_files(folder)
    state: dict = {}
    for file in files:
        part = load_state_file(file, options)
        if not is_state_dict(part):
            raise TargetError(f"{file}: does not hold a state_dict")
        state.update(part)
    info = {"format": "Hugging Face folder", "weights": [f.name for f in files],
            "file_size": sum(f.stat().st_size for f in files)}
    optimizer_state = None
    if (folder / OPTIMIZER_FILE).is_file():
        optimizer_state = load_state_file(folder / OPTIMIZER_FILE, options)
        if not is_optimizer_state(optimizer_state):
            raise TargetError(f"{folder / OPTIMIZER_FILE}: not an optimizer state_dict")
        describe_optimizer(optimizer_state, info, OPTIMIZER_FILE)
    if options.model_factory:
        from evalguard.loading.factory import build_model

        model = build_model(options.model_factory)
        return state_dict_subject(folder, "hf-folder", model, state, options, info, optimizer_state=optimizer_state)
    model, spec = _model_from_config(folder)
    return state_dict_subject(folder, "hf-folder", model, state, options, info,
                              optimizer_state=optimizer_state, spec=spec,
                              mode_source="config.json (eval mode, as from_pretrained returns it)")


_WIDTH_KEYS = ("hidden_size", "d_model", "n_embd", "dim", "embed_dim")
_DEPTH_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
_FFN_KEYS = ("intermediate_size", "ffn_dim", "n_inner", "d_ff", "hidden_dim")
_TABLE_KEYS = ("vocab_size", "max_position_embeddings", "n_positions", "type_vocab_size")
#: A config may describe a model at most this much larger than the weights stored next to it.
CONFIG_SLACK_BYTES = 256 << 20


def estimate_parameters(config: dict) -> int:
    """Rough parameter count of a transformer config (embeddings + layers), before building anything."""
    def number(keys, default=0):
        values = [config.get(k) for k in keys if isinstance(config.get(k), int) and not isinstance(config.get(k), bool)]
        return max(values) if values else default

    width, depth = number(_WIDTH_KEYS), number(_DEPTH_KEYS, 1)
    ffn = number(_FFN_KEYS, 4 * width)
    tables = sum(config.get(k) for k in _TABLE_KEYS if isinstance(config.get(k), int) and config.get(k) > 0)
    return tables * width + depth * (4 * width * width + 2 * width * ffn)


def check_config_size(folder: Path, config: dict) -> None:
    """Refuse (EG905) a config.json that would allocate far more than the weights next to it hold."""
    from evalguard.loading.safe_load import refuse_container

    weights = sum(f.stat().st_size for f in weight_files(folder))
    wanted = 4 * estimate_parameters(config)
    if wanted > 4 * weights + CONFIG_SLACK_BYTES:
        raise refuse_container(folder, f"config.json describes a model of about {wanted / 2**30:.1f} GiB "
                                       f"but the weights hold {weights / 2**20:.1f} MiB", kind="hf-folder")


def _model_from_config(folder: Path):
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise TargetError(f"{folder}: Hugging Face folder without config.json; pass --model MODULE:CALLABLE")
    try:
        config_data = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise TargetError(f"{config_path}: unreadable ({exc})") from None
    architectures = config_data.get("architectures") or []
    if not architectures or not isinstance(architectures[0], str):
        raise TargetError(f"{config_path}: names no architecture; pass --model MODULE:CALLABLE")
    try:
        import transformers
    except ImportError:
        raise TargetError(f"{folder}: building the architecture from config.json needs 'transformers'; "
                          "install it or pass --model MODULE:CALLABLE") from None
    model_class = getattr(transformers, architectures[0], None)
    if not isinstance(model_class, type):
        raise TargetError(f"{config_path}: architecture {architectures[0]!r} is not a transformers class "
                          "(remote code is never run); pass --model MODULE:CALLABLE")
    check_config_size(folder, config_data)
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        model = model_class(config)
    except Exception as exc:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise TargetError(f"{folder}: cannot build {architectures[0]} from config.json: {text}") from exc
    model.eval()
    return model, f"transformers.{architectures[0]} from config.json"
