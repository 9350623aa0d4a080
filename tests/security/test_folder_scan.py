"""Issue 25 item 4: the folder-wide scan sees every file a user or a training script could load.

Each class of hiding place gets a refusal test through ``load_target`` (the product's path) and a
positive control: the file's own loader (pickle, numpy, gzip...) really runs the payload, which
only creates a marker file.
"""
from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import payloads as P
import pytest

from evalguard.errors import RefusedTarget
from evalguard.loading import load_target
from evalguard.subject import AuditOptions

_COMPRESSORS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "marker"
    yield path
    assert not path.exists(), "a payload ran"


def refusal(folder, **options) -> tuple[set[str], str]:
    with pytest.raises(RefusedTarget) as info:
        load_target(str(folder), AuditOptions(**options))
    exc = info.value
    assert len(str(exc).splitlines()) == 1
    return {f.rule for f in exc.findings}, json.dumps([f.evidence for f in exc.findings]
                                                      + [f.message for f in exc.findings])


def payload_pickle(marker: Path, protocol: int = 2) -> bytes:
    return pickle.dumps(P.touch_payload(marker), protocol=protocol)


def object_array(marker: Path) -> np.ndarray:
    array = np.empty(1, dtype=object)
    array[0] = P.touch_payload(marker)
    return array


# -- builders: (folder, the file a user would load, how they load it) ---------------------------

def with_protocol0_other_suffix(folder: Path, marker: Path) -> Path:
    path = folder / "notes.cfg"
    path.write_bytes(payload_pickle(marker, protocol=0))
    return path


def with_pickle_starting_with_other_opcodes(folder: Path, marker: Path) -> Path:
    path = folder / "state"          # no suffix; INT then POP before the payload
    path.write_bytes(b"I7\n0" + payload_pickle(marker, protocol=0))
    return path


def with_protocol1(folder: Path, marker: Path) -> Path:
    path = folder / "cache.tmp"
    path.write_bytes(payload_pickle(marker, protocol=1))
    return path


def with_broken_tail(folder: Path, marker: Path) -> Path:
    """pickle.load runs the payload before it meets the garbage that follows it."""
    path = folder / "half.dat2"
    path.write_bytes(payload_pickle(marker, protocol=0)[:-1] + b"\xff\xfe garbage")
    return path


def with_npy_object_array(folder: Path, marker: Path) -> Path:
    path = folder / "embeddings.npy"
    np.save(path, object_array(marker), allow_pickle=True)
    return path


def with_npz_object_member(folder: Path, marker: Path) -> Path:
    path = folder / "features.npz"
    np.savez(path, ok=np.arange(3), evil=object_array(marker))
    return path


def compressed(kind: str):
    def build(folder: Path, marker: Path) -> Path:
        path = folder / f"optimizer.{kind}"
        path.write_bytes(_COMPRESSORS[kind](payload_pickle(marker)))
        return path
    build.__name__ = f"with_{kind}_pickle"
    return build


def with_symlinked_file_outside(folder: Path, marker: Path) -> Path:
    outside = folder.parent / "elsewhere.pkl"
    outside.write_bytes(payload_pickle(marker))
    (folder / "extra.pkl").symlink_to(outside)
    return folder / "extra.pkl"


def with_symlinked_folder_outside(folder: Path, marker: Path) -> Path:
    outside = folder.parent / "shared_ckpts"
    outside.mkdir()
    (outside / "rng_state.pth").write_bytes(payload_pickle(marker))
    (folder / "checkpoints").symlink_to(outside, target_is_directory=True)
    return folder / "checkpoints" / "rng_state.pth"


def with_deep_folder(folder: Path, marker: Path) -> Path:
    deep = folder.joinpath(*[f"d{i}" for i in range(40)])
    deep.mkdir(parents=True)
    (deep / "extra.pkl").write_bytes(payload_pickle(marker))
    return deep / "extra.pkl"


def with_symlink_inside_to_a_deep_pickle(folder: Path, marker: Path) -> Path:
    """A link inside the folder to a pickle inside it: followed and scanned, not refused."""
    (folder / "real").mkdir()
    (folder / "real" / "payload.bin").write_bytes(payload_pickle(marker))
    (folder / "alias.pt").symlink_to(folder / "real" / "payload.bin")
    return folder / "alias.pt"


LOADERS = {
    "npy": "import numpy, sys; numpy.load(sys.argv[1], allow_pickle=True)",
    "npz": "import numpy, sys; numpy.load(sys.argv[1], allow_pickle=True)['evil']",
    "gz": "import gzip, pickle, sys; pickle.load(gzip.open(sys.argv[1]))",
    "bz2": "import bz2, pickle, sys; pickle.load(bz2.open(sys.argv[1]))",
    "xz": "import lzma, pickle, sys; pickle.load(lzma.open(sys.argv[1]))",
}
PLAIN = "import pickle, sys\ntry:\n    pickle.load(open(sys.argv[1], 'rb'))\nexcept Exception:\n    pass"

EG901_CASES = [with_protocol0_other_suffix, with_pickle_starting_with_other_opcodes, with_protocol1,
               with_npy_object_array, with_npz_object_member, compressed("gz"), compressed("bz2"),
               compressed("xz"), with_symlink_inside_to_a_deep_pickle]
EG905_CASES = [(with_symlinked_file_outside, "outside the audited folder"),
               (with_symlinked_folder_outside, "outside the audited folder"),
               (with_deep_folder, "nested more than"), (with_broken_tail, "breaks off")]


def _loader_for(path: Path) -> str:
    return LOADERS.get(path.suffix.lstrip("."), PLAIN)


@pytest.mark.parametrize("build", EG901_CASES, ids=lambda b: b.__name__)
def test_hidden_pickle_is_vetted_and_refused(tmp_path, build, marker):
    folder = P.safetensors_folder(tmp_path)
    path = build(folder, marker)
    rules, text = refusal(folder)
    assert "EG901" in rules and "system" in text
    assert path.relative_to(folder).as_posix().split("/")[0] in text


@pytest.mark.parametrize(("build", "why"), EG905_CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_unvettable_place_is_refused_naming_the_path(tmp_path, build, why, marker):
    folder = P.safetensors_folder(tmp_path)
    path = build(folder, marker)
    rules, text = refusal(folder)
    assert rules == {"EG905"} and why in text
    assert path.relative_to(folder).as_posix().split("/")[0] in text


@pytest.mark.parametrize("build", EG901_CASES + [c[0] for c in EG905_CASES], ids=lambda b: b.__name__)
def test_control_the_files_own_loader_runs_the_payload(tmp_path, build):
    ran = tmp_path / "ran"
    folder = P.safetensors_folder(tmp_path)
    path = build(folder, ran)
    result = subprocess.run([sys.executable, "-c", _loader_for(path), str(path)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert ran.exists(), result.stderr[-400:]


def test_npy_object_array_names_the_construct(tmp_path, marker):
    folder = P.safetensors_folder(tmp_path)
    with_npy_object_array(folder, marker)
    _rules, text = refusal(folder)
    assert "object array" in text and "embeddings.npy" in text


def test_decompression_bomb_is_refused_not_expanded(tmp_path, monkeypatch):
    from evalguard.loading import folder_scan

    monkeypatch.setattr(folder_scan, "MAX_DECOMPRESSED", 1 << 20)
    folder = P.safetensors_folder(tmp_path)
    # a pickle whose one BINBYTES8 item declares 4 MiB of (highly compressible) bytes
    body = b"\x80\x04\x8e" + (4 << 20).to_bytes(8, "little") + b"\0" * (4 << 20) + b"."
    (folder / "cache.gz").write_bytes(gzip.compress(body, 1))
    rules, text = refusal(folder)
    assert rules == {"EG905"} and "decompression bomb" in text and "cache.gz" in text


@pytest.mark.realmodel  # builds the folder's BERT through transformers
def test_benign_folder_files_are_not_taken_for_pickles(tmp_path):
    """Text, JSON, numeric arrays and compressed text in a model folder: no refusal."""
    folder = P.safetensors_folder(tmp_path)
    (folder / "vocab.txt").write_text("cat\ndog\nfish\n(\n]\n")
    (folder / "classes.txt").write_text("cos\nsin\n")
    (folder / "README.md").write_text("# model\n")
    np.save(folder / "mean.npy", np.arange(4.0))
    np.savez(folder / "stats.npz", a=np.arange(3))
    (folder / "log.gz").write_bytes(gzip.compress(b"step 1 loss 0.5\n"))
    (folder / "sub").mkdir()
    (folder / "sub" / "numbers.bin").write_bytes(os.urandom(256))
    subject = load_target(str(folder), AuditOptions())
    assert subject.kind == "hf-folder"


@pytest.mark.realmodel  # builds the folder's BERT through transformers
def test_hugging_face_cache_snapshot_links_to_its_blobs_are_followed(tmp_path, marker):
    repo = tmp_path / "models--org--tiny"
    source = P.safetensors_folder(tmp_path, "src")
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        blob = repo / "blobs" / f"hash_{file.name}"
        blob.write_bytes(file.read_bytes())
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", blob.name))
    assert load_target(str(snapshot), AuditOptions()).kind == "hf-folder"
    (repo / "blobs" / "hash_extra").write_bytes(payload_pickle(marker))
    (snapshot / "extra.pkl").symlink_to(Path("..", "..", "blobs", "hash_extra"))
    rules, text = refusal(snapshot)
    assert "EG901" in rules and "extra.pkl" in text
