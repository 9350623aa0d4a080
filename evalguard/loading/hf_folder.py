"""Hugging Face ``save_pretrained`` folders: weights (+ optional optimizer.pt) into an architecture.

The weights are read by evalguard itself (safetensors, or a torch.save archive scanned and
vetted first and loaded weights-only). The architecture comes from ``--model``; without it,
from ``config.json`` through the installed ``transformers`` (the class named in
``architectures``; remote code is never enabled), and the weights go in through transformers'
own loading path (``from_pretrained(None, config=..., state_dict=...)``), which applies the key
renames of that architecture (legacy names, ``gamma``/``beta``), ties shared weights and returns
the model in eval mode, exactly as a user's ``from_pretrained`` would.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

from evalguard.errors import TargetError, first_line
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
        scan = scan_folder(folder)
    except ArchiveRefused as exc:
        raise refuse_container(folder, str(exc), kind="hf-folder") from None
    if scan.refusals:
        more = len(scan.refusals) - 3
        shown = "; ".join(scan.refusals[:3]) + (f" and {more} more" if more > 0 else "")
        raise refuse_container(folder, shown, kind="hf-folder")
    vet(folder, scan.refs, AllowList(options.trust_modules), kind="hf-folder", problems=scan.constructs)


#: Keys of a Hugging Face JSON config that point at code shipped with the folder: ``auto_map``
#: (model, config, tokenizer, processor and feature-extractor classes) and ``custom_pipelines``.
#: ``from_pretrained(trust_remote_code=True)`` imports and runs that code.
_CODE_KEYS = ("auto_map", "custom_pipelines")
_MAX_JSON = 4 << 20


def shipped_code(folder: Path) -> list[str]:
    """What in the folder is code a deployment would run and evalguard will not: every ``*.py``
    file anywhere in it (``modeling_*.py``, but also ``configuration_*.py``, ``tokenization_*.py``,
    which run on loading the config or tokenizer), and every ``auto_map``/``custom_pipelines`` entry
    of its top-level JSON configs (config.json, tokenizer_config.json, processor or preprocessor
    configs), whatever class it names (names relative to the folder)."""
    found = []
    for config in sorted(folder.glob("*.json")):
        try:
            if not config.is_file() or config.stat().st_size > _MAX_JSON:
                continue
            data = json.loads(config.read_text(encoding="utf-8"))
        except (ValueError, OSError, UnicodeDecodeError):
            continue
        for key in _CODE_KEYS:
            value = data.get(key) if isinstance(data, dict) else None
            if value:
                found.append(f"{config.name} {key} -> {json.dumps(value)[:80]}")
    found += sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.py") if p.is_file())
    return found


def refuse_shipped_code(folder: Path, shipped: list[str]):
    """EG905: the model is defined by code shipped in the folder, which evalguard never runs; the
    stock transformers class in its place would be a different model, so nothing is audited."""
    from evalguard.loading.safe_load import refuse_container

    return refuse_container(
        folder, f"the model is defined by code shipped in the folder ({'; '.join(shipped[:3])}), which evalguard "
                "never runs, so the architecture it would audit is not the one you deploy; pass --model "
                "MODULE:CALLABLE with your own trusted factory for this architecture", kind="hf-folder")


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
    shipped = shipped_code(folder)
    if shipped and not options.model_factory:
        raise refuse_shipped_code(folder, shipped)
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
    if shipped:
        info["shipped_code_not_run"] = shipped
        info["architecture"] = f"--model {options.model_factory} (the folder's own code was not run)"
    if options.model_factory:
        from evalguard.loading.factory import build_model

        model = build_model(options.model_factory)
        return state_dict_subject(folder, "hf-folder", model, state, options, info, optimizer_state=optimizer_state)
    from evalguard.loading.subjects import model_subject

    model, weights_info = _load_with_transformers(folder, state)
    return model_subject(folder, "hf-folder", model, options, {**info, **weights_info},
                         optimizer_state=optimizer_state,
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


def _load_with_transformers(folder: Path, state: dict):
    """The architecture of ``config.json`` with ``state`` loaded by transformers itself; returns
    the model and what to record about how the keys matched."""
    from evalguard.loading.checkpoint_layouts import key_report

    model_class, config, name = _architecture_from_config(folder)
    model, missing, unexpected, renamed = transformers_load(model_class, config, state, f"{folder}", name)
    expected = len(model.state_dict())
    weights_info = {"architecture": f"transformers.{name} from config.json",
                    "loaded_keys": expected - len(missing), "expected_keys": expected,
                    **key_report(missing, unexpected)}
    if renamed:
        weights_info["renamed_keys"] = renamed
    model.eval()
    return model, weights_info


def is_transformers_model(model) -> bool:
    """A ``transformers.PreTrainedModel`` (checked without importing transformers for others)."""
    module = sys.modules.get("transformers")
    pretrained = getattr(module, "PreTrainedModel", None) if module is not None else None
    return isinstance(pretrained, type) and isinstance(model, pretrained)


def transformers_load(model_class, config, state: dict, where: str, name: str):
    """``model_class.from_pretrained(None, config=..., state_dict=state)``: transformers' own
    loading path (its key renames for the architecture, weight tying; never remote code).
    Returns the model, the missing and unexpected keys and how many file keys were renamed."""
    file_keys = list(state)
    try:
        with _quiet_transformers():
            model, loading = model_class.from_pretrained(None, config=config, state_dict=dict(state),
                                                         output_loading_info=True, trust_remote_code=False)
    except Exception as exc:
        raise TargetError(f"{where}: transformers cannot load the weights into {name}: {first_line(exc)}") from exc
    mismatched = sorted(loading.get("mismatched_keys") or ())
    if mismatched:
        shown = "; ".join(f"{k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in mismatched[:3])
        raise TargetError(f"{where}: {len(mismatched)} tensor shape(s) differ from {name}: {shown}")
    model_keys = set(model.state_dict())
    missing = sorted(loading.get("missing_keys") or ())
    unexpected = sorted(loading.get("unexpected_keys") or ())
    unexpected_set = set(unexpected)
    renamed = sum(1 for key in file_keys if key not in model_keys and key not in unexpected_set)
    return model, missing, unexpected, renamed


@contextmanager
def _quiet_transformers():
    """transformers prints a progress bar and a load report; evalguard reports the keys itself."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _architecture_from_config(folder: Path):
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
        with _quiet_transformers():
            config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True,
                                                             trust_remote_code=False)
    except Exception as exc:
        raise TargetError(f"{folder}: cannot read config.json for {architectures[0]}: {first_line(exc)}") from exc
    return model_class, config, architectures[0]
