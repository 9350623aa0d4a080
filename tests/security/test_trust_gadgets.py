"""Issue 25 item 6: the trust deny-list matches the defining module a real pickle names, and a
trusted class whose rebuild (REDUCE calls ``__init__``; BUILD sets attributes) touches files is
not a "plain data class".

Positive controls: the format's own loader (``pickle.load``) really creates the marker through
each gadget; evalguard, with the package trusted, refuses the file.
"""
from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import payloads as P
import pytest

from evalguard.errors import RefusedTarget
from evalguard.loading import load_target
from evalguard.loading.allowlist import ALLOWED, UNSAFE, AllowList
from evalguard.loading.gadgets import DENIED
from evalguard.loading.pickle_scan import GlobalRef
from evalguard.subject import AuditOptions

PACKAGE_SOURCE = '''
import dataclasses
from pathlib import Path

import numpy


class WritesInInit:
    def __init__(self, path):
        self.path = path
        with open(path, "w") as handle:
            handle.write("x")


class WritesThroughAHelper:
    def __init__(self, path):
        self.path = path
        self._prepare()

    def _prepare(self):
        make_folder(self.path)


def make_folder(path):
    Path(path).mkdir(parents=True)


@dataclasses.dataclass
class WritesInPostInit:
    path: str

    def __post_init__(self):
        Path(self.path).touch()


@dataclasses.dataclass
class PlainRecord:
    name: str
    score: float = 0.0


class CachedArray(numpy.memmap):
    pass
'''


@pytest.fixture
def package(tmp_path, monkeypatch) -> str:
    name = f"evalguard_gadgetpkg_{abs(hash(str(tmp_path))) % 10**8}"
    root = tmp_path / "src" / name
    root.mkdir(parents=True)
    (root / "__init__.py").write_text(textwrap.dedent(PACKAGE_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    return name


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "marker"
    yield path
    assert not path.exists(), "a gadget ran"


def call_pickle(module: str, name: str, *args) -> bytes:
    """``module.name(*args)`` by REDUCE, as a hand-written protocol-2 pickle."""
    a = P.Asm().glob(module, name).tuple(*args).op("REDUCE")
    return a.done()


def refused_with(tmp_path, body: bytes, trust: str) -> str:
    path = P.torch_save_with_data_pkl(tmp_path, "gadget.pt", body)
    with pytest.raises(RefusedTarget) as info:
        load_target(str(path), AuditOptions(trust_modules=(trust,)))
    eg901 = [f for f in info.value.findings if f.rule == "EG901"]
    assert eg901, info.value.findings
    return str([f.evidence for f in eg901])


def control_runs(tmp_path, body: bytes, ran: Path) -> None:
    path = tmp_path / "control.pkl"
    path.write_bytes(body)
    result = subprocess.run([sys.executable, "-c", "import pickle, sys; sys.path.insert(0, sys.argv[2]);"
                             "pickle.load(open(sys.argv[1], 'rb'))", str(path), str(tmp_path / "src")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert ran.exists(), result.stderr[-600:]


MEMMAP_NAMES = [("numpy._core.memmap", "memmap"), ("numpy", "memmap")]


@pytest.mark.parametrize(("module", "name"), MEMMAP_NAMES, ids=["defining-module", "re-export"])
def test_memmap_under_either_name_is_refused_with_numpy_trusted(tmp_path, marker, module, name):
    body = call_pickle(module, name, str(marker), "uint8", "w+", 0, (8,))
    assert "memmap" in refused_with(tmp_path, body, "numpy")


@pytest.mark.parametrize(("module", "name"), MEMMAP_NAMES, ids=["defining-module", "re-export"])
def test_control_memmap_under_either_name_creates_the_file(tmp_path, module, name):
    ran = tmp_path / "ran"
    control_runs(tmp_path, call_pickle(module, name, str(ran), "uint8", "w+", 0, (8,)), ran)


@pytest.mark.realmodel  # imports transformers (slow)
@pytest.mark.parametrize("full", ["transformers.trainer.Trainer", "transformers.training_args.TrainingArguments",
                                  "transformers.Trainer"])
def test_transformers_gadgets_are_refused_under_their_defining_module(full):
    module, _, name = full.rpartition(".")
    decision = AllowList(("transformers",)).decide(GlobalRef(module, name))
    assert decision.status == UNSAFE and "never allowed" in decision.reason


@pytest.mark.parametrize(("cls", "why"), [("WritesInInit", "open()"),
                                          ("WritesThroughAHelper", "mkdir()"),
                                          ("WritesInPostInit", "touch()")])
def test_trusted_class_whose_rebuild_writes_files_is_refused(tmp_path, marker, package, cls, why):
    body = call_pickle(package, cls, str(marker))
    text = refused_with(tmp_path, body, package)
    assert cls in text and why in text and "I/O" in text


@pytest.mark.parametrize("cls", ["WritesInInit", "WritesThroughAHelper", "WritesInPostInit"])
def test_control_rebuilding_the_class_writes_the_file(tmp_path, package, cls):
    ran = tmp_path / "ran"
    control_runs(tmp_path, call_pickle(package, cls, str(ran)), ran)


def test_subclass_of_a_denied_class_is_refused(package):
    decision = AllowList((package,)).decide(GlobalRef(package, "CachedArray"))
    assert decision.status == UNSAFE and "subclass of numpy.memmap" in decision.reason


def test_plain_dataclass_from_a_trusted_package_is_allowed(package):
    decision = AllowList((package,)).decide(GlobalRef(package, "PlainRecord"))
    assert decision.status == ALLOWED, decision


def test_plain_dataclass_round_trips_through_the_loader(tmp_path, package):
    module = importlib.import_module(package)
    path = tmp_path / "meta.pt"
    import torch

    torch.save({"w": torch.ones(2), "meta": module.PlainRecord("run", 0.5)}, path)
    from evalguard.loading.formats import scan_torch_zip
    from evalguard.loading.safe_load import vet

    names = {name for _obj, name in vet(path, scan_torch_zip(path), AllowList((package,)), kind="pickle")}
    assert f"{package}.PlainRecord" in names


def test_every_denied_entry_is_listed_under_its_defining_name():
    """A re-export in DENIED whose class is importable here must also be listed where it is defined
    (the name a pickle of it carries): the list cannot drift from the packages silently.
    Imports numpy and transformers, which evalguard's own tests already import."""
    missing = []
    for full in sorted(DENIED):
        module, _, name = full.rpartition(".")
        if module.split(".")[0] not in ("numpy", "transformers"):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = importlib.import_module(module)
                for part in name.split("."):
                    obj = getattr(obj, part)
        except (ImportError, AttributeError):
            continue
        defining = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
        if defining.split(".")[0] in sys.stdlib_module_names:
            continue  # a standard-library class (ctypes.c_long): refused whatever the trust flags
        if isinstance(obj, type) and defining not in DENIED:
            missing.append(f"{full} -> {defining}")
    assert not missing, missing


def test_pickle_of_a_denied_class_names_what_the_list_holds():
    import numpy as np

    refs = [arg for op, arg, _ in __import__("pickletools").genops(pickle.dumps(np.memmap, protocol=2))
            if op.name == "GLOBAL"]
    assert refs and all(f"{r.split(' ')[0]}.{r.split(' ')[1]}" in DENIED for r in refs)


def test_class_with_io_in_init_saved_as_pickle_saves_it_is_allowed(tmp_path, package, marker):
    """pickle saves instances with NEWOBJ (``cls.__new__`` + state): ``__init__`` never runs, so a
    trusted class whose constructor can write files is still admitted when it is not called."""
    import torch

    from evalguard.loading.formats import scan_torch_zip
    from evalguard.loading.safe_load import vet

    module = importlib.import_module(package)
    meta = module.WritesInInit.__new__(module.WritesInInit)
    meta.path = str(marker)
    path = tmp_path / "meta.pt"
    torch.save({"w": torch.ones(2), "meta": meta}, path)
    names = {name for _obj, name in vet(path, scan_torch_zip(path), AllowList((package,)), kind="pickle")}
    assert f"{package}.WritesInInit" in names
