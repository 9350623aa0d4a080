"""``load_model_file``: detect a file's format by content and load it without running its code.

Pickle-based files (torch.save zip and legacy formats, TorchScript, pickles inside .pt2)
are scanned first (``pickle_scan``) and vetted against the allow-list (``allowlist``); only
then are they loaded with ``torch.load(weights_only=True)`` (``safe_load``). Any failure is a
one-line ``TargetError``; refusals are ``RefusedTarget`` with EG901/EG902 findings.
"""
from __future__ import annotations

from pathlib import Path

from evalguard.errors import TargetError, first_line
from evalguard.loading.allowlist import AllowList
from evalguard.loading.archive import Archive, ArchiveCorrupt, ArchiveRefused
from evalguard.loading.pickle_scan import (
    PickleScanError,
    ScanLimit,
    pickle_members,
    scan_archive_members,
    scan_legacy_stream,
    scan_pickle,
)
from evalguard.loading.safe_load import refuse_container, torch_load, trial_load, vet
from evalguard.loading.safetensors_file import load_safetensors_file
from evalguard.loading.sniff import Sniffed, sniff
from evalguard.loading.subjects import model_subject, subject_from_object
from evalguard.subject import AuditOptions, AuditSubject


def load_model_file(path: Path, options: AuditOptions) -> AuditSubject:
    """Third-party failures on the user's file are wrapped where they happen (torch.load, the
    zip reader, safetensors, transformers) as ``TargetError``; anything else escaping from here
    is evalguard's own bug, which the engine reports as EG900 naming the loader."""
    path = Path(path)
    try:
        return _load(path, options)
    except MemoryError:
        raise TargetError(f"{path}: out of memory while loading") from None


def _load(path: Path, options: AuditOptions) -> AuditSubject:
    if path.is_dir():
        from evalguard.loading.hf_folder import load_hf_folder

        return load_hf_folder(path, options)
    sniffed = sniff(path)
    container = sniffed.container
    if container == "empty":
        raise TargetError(f"{path}: empty file")
    if container == "zip":
        return _load_zip(path, sniffed, options)
    if container == "torch-legacy":
        return _load_legacy(path, options)
    if container == "pickle":
        return _refuse_plain_pickle(path, options)
    if container == "safetensors":
        return load_safetensors_file(path, options)
    if container == "onnx":
        from evalguard.loading.onnx_file import load_onnx_subject, read_onnx

        proto = read_onnx(path)
        if proto is not None:
            return load_onnx_subject(path, proto, options)
        if path.suffix.lower() == ".onnx":
            raise TargetError(f"{path}: not a valid ONNX model (truncated or corrupt?)")
    if _is_old_protocol_pickle(path):
        return _refuse_plain_pickle(path, options)
    if container == "text":
        raise TargetError(f"{path}: a text file, not a model (expected a torch.save/TorchScript/.pt2/"
                          "safetensors/ONNX file or a .py source)")
    raise TargetError(f"{path}: unrecognised file format (not a torch.save/TorchScript/.pt2/safetensors/ONNX file)")


# -- pickle-based files -------------------------------------------------------------------


def _load_zip(path: Path, sniffed: Sniffed, options: AuditOptions) -> AuditSubject:
    layout = sniffed.layout
    if layout == "corrupt":
        raise TargetError(f"{path}: truncated or corrupt zip archive ({sniffed.reason})")
    if layout == "refused":
        raise refuse_container(path, sniffed.reason)
    if layout == "torchscript":
        return _load_torchscript(path, options)
    if layout == "pt2":
        from evalguard.loading.exported import load_exported_program

        return load_exported_program(path, sniffed, options)
    if layout != "torch-save":
        raise TargetError(f"{path}: a zip archive, but not one written by torch.save, torch.jit.save "
                          "or torch.export.save")
    refs = scan_torch_zip(path)
    register = vet(path, refs, AllowList(options.trust_modules), kind="pickle")
    obj = torch_load(path, register, mmap=True, trust_modules=options.trust_modules)
    return subject_from_object(path, obj, options, {"format": "torch.save zip archive (memory-mapped)"})


def _load_legacy(path: Path, options: AuditOptions) -> AuditSubject:
    try:
        with open(path, "rb") as stream:
            refs = scan_legacy_stream(stream)
    except PickleScanError as exc:
        raise TargetError(f"{path}: truncated or corrupt legacy torch.save file ({exc})") from None
    register = vet(path, refs, AllowList(options.trust_modules), kind="pickle")
    if any(_is_module_class(obj) for obj, _ in register):
        # The legacy format stores module classes as persistent ids (with their source code),
        # which torch's weights-only unpickler cannot accept.
        raise TargetError(f"{path}: a full module in the legacy (pre-1.6, non-zip) torch.save format cannot be "
                          "loaded weights-only; re-save it with a current torch, or save its state_dict "
                          "and pass --model")
    # the legacy format cannot be memory-mapped
    obj = torch_load(path, register, mmap=False, trust_modules=options.trust_modules)
    return subject_from_object(path, obj, options, {"format": "legacy torch.save file (not zip)"})


def _is_module_class(obj) -> bool:
    from torch import nn

    return isinstance(obj, type) and issubclass(obj, nn.Module)


def _refuse_plain_pickle(path: Path, options: AuditOptions) -> AuditSubject:
    """A pickle not written by torch.save: refused with EG901 if unsafe, else a clear error."""
    try:
        with open(path, "rb") as stream:
            refs = scan_pickle(stream)
    except PickleScanError as exc:
        raise TargetError(f"{path}: truncated or corrupt pickle ({exc})") from None
    vet(path, refs, AllowList(options.trust_modules), kind="pickle")
    raise TargetError(f"{path}: a plain Python pickle, not a file written by torch.save; evalguard never "
                      "unpickles those (save it with torch.save)")


def _is_old_protocol_pickle(path: Path) -> bool:
    """Protocol 0/1 pickles have no header; a complete parse is the only test."""
    try:
        with open(path, "rb") as stream:
            scan_pickle(stream)
    except PickleScanError:
        return False
    return True


def scan_torch_zip(path: Path):
    """Globals of a torch.save archive, after checking that every tensor record is complete.

    With ``mmap=True`` torch maps a storage by its expected size and does not notice a
    truncated record (it silently reads the bytes that follow), so the sizes are checked here.
    """
    def scan(archive: Archive):
        refs, storages = [], []
        sizes = {name.lower(): archive.size(name) for name in archive.names()}
        for member in pickle_members(archive):
            refs += scan_pickle(archive.open(member), member, storages)
            check_storage_records(path, sizes, member.rpartition("/")[0], storages)
            storages.clear()
        return refs

    return open_archive(path, scan)


def check_storage_records(path: Path, sizes: dict[str, int], folder: str, storages) -> None:
    """``sizes``: member size by lower-cased name (torch's reader matches names case-insensitively)."""
    from torch.serialization import StorageType

    for storage in storages:
        record = f"{folder}/data/{storage.key}" if folder else f"data/{storage.key}"
        try:
            itemsize = 1 if storage.storage_type.name == "UntypedStorage" else \
                StorageType(storage.storage_type.name).dtype.itemsize
            expected = storage.numel * itemsize
        except (AttributeError, KeyError, TypeError, RuntimeError):
            continue  # an unusual storage type: torch checks it itself
        size = sizes.get(record.lower())
        if size is None:
            raise TargetError(f"{path}: tensor record {record} is missing (truncated or corrupt archive)")
        if size != expected:
            raise TargetError(f"{path}: tensor record {record} has {size} bytes, expected {expected} "
                              "(truncated or corrupt archive)")


def open_archive(path: Path, scan_archive):
    """Run ``scan_archive`` on the vetted archive; structural problems refuse the file (EG905)."""
    try:
        with Archive.open_path(path) as archive:
            return scan_archive(archive)
    except (ArchiveRefused, ScanLimit) as exc:
        raise refuse_container(path, str(exc)) from None
    except PickleScanError as exc:
        raise TargetError(f"{path}: corrupt pickle inside the archive ({exc})") from None
    except (ArchiveCorrupt, OSError, EOFError, ValueError) as exc:
        raise TargetError(f"{path}: truncated or corrupt zip archive ({exc})") from None


def _load_torchscript(path: Path, options: AuditOptions) -> AuditSubject:
    import torch

    from evalguard.loading.program_scan import scan_torchscript_code

    def scan(archive: Archive):
        return scan_archive_members(archive, pickle_members(archive)), scan_torchscript_code(archive)

    refs, unsafe_ops = open_archive(path, scan)
    vet(path, refs, AllowList(options.trust_modules, flavour="torchscript"), kind="torchscript",
        unsafe_ops=unsafe_ops)
    trial_load(path, "torchscript")
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise TargetError(f"{path}: TorchScript archive cannot be loaded: {first_line(exc)}") from exc
    return model_subject(path, "torchscript", model, options, {"format": "TorchScript archive"},
                         mode_source="file")
