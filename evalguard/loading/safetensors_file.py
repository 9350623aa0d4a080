"""safetensors files: pure tensor data (no code can run), loaded into the ``--model`` architecture."""
from __future__ import annotations

from pathlib import Path

from evalguard.errors import TargetError, first_line
from evalguard.loading.subjects import architecture_for, state_dict_subject
from evalguard.subject import AuditOptions, AuditSubject

#: Largest header read (real ones are well under a megabyte per thousand tensors).
MAX_HEADER = 16 << 20


def check_safetensors_header(path: Path) -> dict:
    import struct

    from evalguard.loading.safe_load import refuse_container
    from evalguard.loading.sniff import read_safetensors_header

    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8).ljust(8, b"\0"))
    if size > MAX_HEADER:
        raise refuse_container(path, f"safetensors header of {size} bytes (more than {MAX_HEADER >> 20} MiB)",
                               kind="safetensors")
    try:
        header = read_safetensors_header(path)
    except RecursionError:
        raise refuse_container(path, "safetensors header nested too deeply to read (a real header has three levels)",
                               kind="safetensors") from None
    except (ValueError, OSError) as exc:
        raise TargetError(f"{path}: corrupt safetensors header ({first_line(exc)})") from None
    if not isinstance(header, dict) or not header:
        raise TargetError(f"{path}: corrupt safetensors header")
    return header


def read_safetensors(path: Path) -> dict:
    """Tensors of a safetensors file (pure data: no code can run)."""
    check_safetensors_header(path)
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise TargetError(f"{path}: reading safetensors needs the 'safetensors' package "
                          "(pip install safetensors)") from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise TargetError(f"{path}: cannot read safetensors file (truncated or corrupt?): {first_line(exc)}") from exc


def load_safetensors_file(path: Path, options: AuditOptions) -> AuditSubject:
    check_safetensors_header(path)
    model = architecture_for(path, options, "a safetensors file (weights only)")
    tensors = read_safetensors(path)
    return state_dict_subject(path, "safetensors", model, tensors, options, {"format": "safetensors"})
