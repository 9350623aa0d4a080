"""Red-team round 3 (folder scan): files whose content evalguard recognised, or should have, but
that it skipped while their own loader runs the payload.

For each hiding place: a positive control (the format's own loader, in a throwaway subprocess,
really runs the payload, which only creates a marker file) and the refusal through the product's
path (``load_target``, or the CLI). Rule under test: recognised content that cannot be checked is
refused (EG905) whatever the file is called, and a pickle found anywhere is vetted (EG901).
"""
from __future__ import annotations

import gzip
import io
import json
import lzma
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import payloads as P
import pytest
import torch

from evalguard.errors import RefusedTarget
from evalguard.loading import load_target
from evalguard.subject import AuditOptions


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "marker"
    yield path
    assert not path.exists(), "a payload ran in the auditing process"


def refusal(target) -> tuple[set[str], str]:
    with pytest.raises(RefusedTarget) as info:
        load_target(str(target), AuditOptions())
    exc = info.value
    return {f.rule for f in exc.findings}, str(exc) + json.dumps([f.evidence for f in exc.findings])


def evil(marker: Path, protocol: int = 4) -> bytes:
    return pickle.dumps(P.touch_payload(marker), protocol=protocol)


# -- builders: write one file into ``folder``; return (path, loader code run on sys.argv[1]) ----

def lzma_alone(folder, marker):
    path = folder / "extra.pkl.lzma"
    path.write_bytes(lzma.compress(evil(marker), format=lzma.FORMAT_ALONE))
    return path, "import lzma, pickle, sys; pickle.load(lzma.open(sys.argv[1]))"


def lzma_alone_other_properties(folder, marker):
    """lc=lp=pb=0: the properties byte is 0x00, not the usual 0x5d."""
    path = folder / "cache.bin"
    filters = [{"id": lzma.FILTER_LZMA1, "lc": 0, "lp": 0, "pb": 0, "dict_size": 1 << 16}]
    path.write_bytes(lzma.compress(evil(marker), format=lzma.FORMAT_ALONE, filters=filters))
    return path, "import lzma, pickle, sys; pickle.load(lzma.open(sys.argv[1]))"


def zlib_stream(folder, marker):
    path = folder / "extra.pkl.z"
    path.write_bytes(zlib.compress(evil(marker), 9))
    return path, "import zlib, pickle, sys; pickle.loads(zlib.decompress(open(sys.argv[1], 'rb').read()))"


def zlib_fast_level(folder, marker):
    path = folder / "state.z"
    path.write_bytes(zlib.compress(evil(marker, 2), 1))
    return path, "import zlib, pickle, sys; pickle.loads(zlib.decompress(open(sys.argv[1], 'rb').read()))"


def zip_member_without_suffix(folder, marker):
    path = folder / "extra.pkl.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("extra", evil(marker))
    return path, "import zipfile, pickle, sys; z = zipfile.ZipFile(sys.argv[1]); pickle.load(z.open(z.namelist()[0]))"


def npz_member_with_bad_crc(folder, marker):
    """numpy unpickles the member before zipfile reaches its end, where it checks the CRC."""
    array = np.empty(1, dtype=object)
    array[0] = P.touch_payload(marker)
    npy = io.BytesIO()
    np.save(npy, array, allow_pickle=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("x.npy", npy.getvalue() + b"\0" * (1 << 20))
    data = bytearray(buffer.getvalue())
    for signature, crc_at in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
        at = data.index(signature)
        data[at + crc_at:at + crc_at + 4] = struct.pack("<I", 0xDEADBEEF)
    path = folder / "extra.arrays"
    path.write_bytes(bytes(data))
    return path, "import numpy, sys; numpy.load(sys.argv[1], allow_pickle=True)['x']"


def protocol0_hex_int(folder, marker):
    """``I0x10``: the unpickler reads it with int(text, 0); pickletools' int(text) rejects it."""
    path = folder / "pytorch_model_extra.bin"
    path.write_bytes(b"I0x10\n0cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    return path, "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))"


def legacy_tar_checkpoint(folder, marker):
    path = folder / "pytorch_model_legacy.bin"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, obj in (("storages", P.touch_payload(marker)), ("tensors", 0), ("pickle", {})):
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path, "import torch, sys; torch.load(sys.argv[1], weights_only=False)"


def gzip_trailing_garbage(folder, marker):
    path = folder / "extra.pkl.gz"
    path.write_bytes(gzip.compress(evil(marker)) + b"GARBAGE!")
    return path, "import gzip, pickle, sys; pickle.load(gzip.open(sys.argv[1]))"


def npy_python2_header(folder, marker):
    """numpy falls back to converting a Python 2 header (``(1L,)``) before it unpickles the data."""
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1L,), }"
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    path = folder / "extra.arr"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + evil(marker, 2))
    return path, "import numpy, sys; numpy.load(sys.argv[1], allow_pickle=True)"


EG901_CASES = [lzma_alone, lzma_alone_other_properties, zlib_stream, zlib_fast_level, zip_member_without_suffix,
               npz_member_with_bad_crc, protocol0_hex_int, gzip_trailing_garbage, npy_python2_header]


@pytest.mark.parametrize("build", [*EG901_CASES, legacy_tar_checkpoint], ids=lambda b: b.__name__)
def test_control_the_files_own_loader_runs_the_payload(tmp_path, build):
    ran = tmp_path / "ran"
    path, code = build(P.safetensors_folder(tmp_path), ran)
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                            timeout=120, check=False, cwd=tmp_path)
    assert ran.exists(), result.stderr[-400:]


@pytest.mark.parametrize("build", EG901_CASES, ids=lambda b: b.__name__)
def test_hidden_pickle_is_found_and_refused(tmp_path, build, marker):
    folder = P.safetensors_folder(tmp_path)
    path, _ = build(folder, marker)
    rules, text = refusal(folder)
    assert "EG901" in rules and "system" in text
    assert path.name in text


def test_legacy_tar_checkpoint_is_refused_naming_the_format(tmp_path, marker):
    folder = P.safetensors_folder(tmp_path)
    legacy_tar_checkpoint(folder, marker)
    rules, text = refusal(folder)
    assert rules == {"EG905"} and "tar archive" in text and "pytorch_model_legacy.bin" in text


@pytest.mark.parametrize(("magic", "kind"), [(b"\x28\xb5\x2f\xfd", "zstd"), (b"\x04\x22\x4d\x18", "lz4")])
def test_compression_without_a_decoder_is_refused(tmp_path, magic, kind):
    folder = P.safetensors_folder(tmp_path)
    (folder / "extra.bin.cmp").write_bytes(magic + os.urandom(64))
    rules, text = refusal(folder)
    assert rules == {"EG905"} and kind in text and "extra.bin.cmp" in text


@pytest.mark.parametrize(("name", "data", "why"), [
    ("notes.dat", gzip.compress(b"\x80\x04K\x01.")[:-12], "gzip"),          # truncated gzip, odd name
    ("weights.arrays", b"PK\x03\x04" + b"\0" * 64, "zip"),                   # a broken zip, odd name
    ("table.arr", b"\x93NUMPY\x01\x00\x10\x00{'descr': ?}   \n", ".npy"),   # an unreadable npy header
], ids=["truncated-gzip", "broken-zip", "bad-npy-header"])
def test_recognised_content_that_cannot_be_checked_is_refused_whatever_its_name(tmp_path, name, data, why):
    folder = P.safetensors_folder(tmp_path)
    (folder / name).write_bytes(data)
    rules, text = refusal(folder)
    assert rules == {"EG905"} and name in text and why in text and "cannot be checked" in text


def flood(pairs: int) -> bytes:
    return b"\x80\x04" + b"N0" * pairs + b"N."


def test_opcode_flood_in_a_folder_is_refused_naming_the_budget(tmp_path, monkeypatch):
    from evalguard.loading import pickle_scan

    monkeypatch.setattr(pickle_scan, "MAX_OPCODES", 50_000)
    folder = P.safetensors_folder(tmp_path)
    (folder / "extra.pkl.gz").write_bytes(gzip.compress(flood(100_000)))
    rules, text = refusal(folder)
    assert rules == {"EG905"} and "opcode budget" in text and "extra.pkl.gz" in text


def test_a_pickle_under_the_opcode_budget_is_still_scanned(tmp_path, monkeypatch, marker):
    from evalguard.loading import pickle_scan

    monkeypatch.setattr(pickle_scan, "MAX_OPCODES", 50_000)
    folder = P.safetensors_folder(tmp_path)
    (folder / "extra.pkl.gz").write_bytes(gzip.compress(flood(1_000)[:-1] + b"0" + evil(marker, 0)))
    rules, _ = refusal(folder)
    assert "EG901" in rules


def test_opcode_flood_in_a_torch_save_target_is_refused(tmp_path, monkeypatch):
    from evalguard.loading import pickle_scan

    monkeypatch.setattr(pickle_scan, "MAX_OPCODES", 50_000)
    target = P.torch_save_with_data_pkl(tmp_path, "flood.pt", flood(100_000))
    rules, text = refusal(target)
    assert rules == {"EG905"} and "opcode budget" in text


def test_folder_scan_time_budget_refuses_naming_the_limit(tmp_path, monkeypatch):
    from evalguard.loading import folder_scan

    monkeypatch.setattr(folder_scan, "MAX_SCAN_SECONDS", 0.0)
    folder = P.safetensors_folder(tmp_path)
    rules, text = refusal(folder)
    assert rules == {"EG905"} and "time budget" in text


def test_benign_folder_with_data_files_has_no_security_finding(tmp_path):
    folder = P.safetensors_folder(tmp_path)
    # int64 data starting with 93 (0x5d, LZMA alone's usual properties byte) and 0x78 bytes (zlib)
    np.savez(folder / "arrays.npz", ids=np.array([93, 0, 1, 2], dtype=np.int64), x=np.random.rand(8, 8))
    np.savez_compressed(folder / "packed.npz", a=np.arange(1000, dtype=np.int64))
    np.save(folder / "ids.npy", np.array([93, 5, 0x9c78], dtype=np.int64))
    (folder / "ids.raw").write_bytes(np.array([93, 0, 0, 0x9c78], dtype=np.int64).tobytes() * 64)
    (folder / "notes.txt.gz").write_bytes(gzip.compress(b"hello\n" * 1000) + b"\0" * 16)
    (folder / "README.md").write_text("# tiny\nIn this folder: weights and arrays.\n")
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\nI0x\n")
    torch.save({"w": torch.arange(64), "b": torch.full((64,), 93, dtype=torch.int64)}, folder / "extra_state.pt")
    load_target(str(folder), AuditOptions())   # raises RefusedTarget on any security finding


def test_cli_refuses_the_folder_with_exit_2(tmp_path, marker):
    folder = P.safetensors_folder(tmp_path)
    gzip_trailing_garbage(folder, marker)
    report = tmp_path / "r.json"
    result = subprocess.run([sys.executable, "-m", "evalguard", "check", str(folder), "--no-onnx", "--format", "json",
                             "-o", str(report)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stderr[-400:]
    data = json.loads(report.read_text())
    assert [t["status"] for t in data["targets"]] == ["refused"]
    assert "EG901" in {f["rule"] for f in data["findings"]}


def zip_behind_prepended_bytes(folder, marker):
    """``zipfile`` finds an archive from its end record, whatever comes before it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("state", evil(marker))
    path = folder / "bundle.dat"
    path.write_bytes(b"#!/bin/sh\necho self-extracting\n" + buffer.getvalue())
    return path, "import zipfile, pickle, sys; z = zipfile.ZipFile(sys.argv[1]); pickle.load(z.open('state'))"


def test_control_zipfile_reads_an_archive_behind_prepended_bytes(tmp_path):
    ran = tmp_path / "ran"
    path, code = zip_behind_prepended_bytes(P.safetensors_folder(tmp_path), ran)
    subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120, check=False)
    assert ran.exists()


def test_zip_behind_prepended_bytes_is_refused(tmp_path, marker):
    folder = P.safetensors_folder(tmp_path)
    zip_behind_prepended_bytes(folder, marker)
    rules, text = refusal(folder)
    assert rules == {"EG905"} and "bundle.dat" in text and "prepended" in text
