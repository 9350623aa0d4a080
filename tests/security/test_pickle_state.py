"""Issue 25 item 3: object states forged through any opcode path are refused.

The scanner follows object identity through the memo and DUP, so it sees which object each
BUILD mutates. Positive controls show each forged state really takes effect under the format's
own loader (the dtype's flags turn to 63; an object dtype with cleared flags crashes numpy).
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import payloads as P
import pytest
import torch

from evalguard.errors import RefusedTarget
from evalguard.loading import load_target
from evalguard.subject import AuditOptions

LIVE_SHAPES = ["memo-rebuild", "memo-after-build", "dup-rebuild", "newobj", "newobj-ex"]
#: Refused too, though numpy 2.4 happens to ignore or reject them (defence in depth).
DEAD_SHAPES = ["dtype-class", "dict-state"]
#: Shapes torch's weights-only unpickler accepts (it knows no DUP, POP or NEWOBJ_EX).
TORCH_SHAPES = ["memo-rebuild", "memo-after-build"]
_SAFE_GLOBALS = ("import numpy as np, torch\nfrom numpy.dtypes import Float64DType, ObjectDType\n"
                 "R = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, Float64DType, ObjectDType]\n")


def refused(path) -> str:
    with pytest.raises(RefusedTarget) as info:
        load_target(str(path), AuditOptions())
    assert "EG901" in {f.rule for f in info.value.findings}
    return json.dumps([f.evidence for f in info.value.findings])


def run(code: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "ignore", "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("shape", LIVE_SHAPES + DEAD_SHAPES)
def test_forged_dtype_state_in_a_torch_file_is_refused(tmp_path, shape):
    path = P.torch_save_with_data_pkl(tmp_path, f"{shape}.pt", P.numpy_dtype_pickle(shape))
    assert "forged state" in refused(path) or "dtype" in refused(path)


@pytest.mark.parametrize("shape", LIVE_SHAPES)
def test_forged_dtype_state_in_a_folder_pickle_is_refused(tmp_path, shape):
    folder = P.safetensors_folder(tmp_path)
    (folder / "stats.pkl").write_bytes(P.numpy_dtype_pickle(shape))
    text = refused(folder)
    assert "stats.pkl" in text and "numpy.dtype" in text


@pytest.mark.parametrize("shape", LIVE_SHAPES)
def test_control_plain_unpickling_applies_the_forged_state(tmp_path, shape):
    path = tmp_path / "dtype.pkl"
    path.write_bytes(P.numpy_dtype_pickle(shape))
    result = run("import pickle, sys; print([int(d.flags) for d in pickle.load(open(sys.argv[1], 'rb'))])", path)
    assert result.returncode == 0, result.stderr[-400:]
    assert "63" in result.stdout  # float64 now claims to hold object references


@pytest.mark.parametrize("shape", TORCH_SHAPES)
def test_control_weights_only_torch_load_applies_the_forged_state(tmp_path, shape):
    path = P.torch_save_with_data_pkl(tmp_path, f"{shape}.pt", P.numpy_dtype_pickle(shape))
    result = run(_SAFE_GLOBALS + "import sys\nwith torch.serialization.safe_globals(R):\n"
                 "    print([int(d.flags) for d in torch.load(sys.argv[1], weights_only=True)])", path)
    assert result.returncode == 0, result.stderr[-400:]
    assert result.stdout.strip() == "[63, 63]"


def test_newobj_object_dtype_array_is_refused_and_crashes_numpy_when_loaded(tmp_path):
    path = P.torch_save_with_data_pkl(tmp_path, "array.pt", P.numpy_object_array_pickle())
    text = refused(path)
    assert "NEWOBJ" in text and "_reconstruct" in text
    result = run(_SAFE_GLOBALS + "import sys\nwith torch.serialization.safe_globals(R):\n"
                 "    print(torch.load(sys.argv[1], weights_only=True))", path)
    assert result.returncode < 0  # killed by a signal: numpy dereferenced the file's bytes


def test_numpy_arrays_saved_by_torch_load_without_security_findings(tmp_path):
    path = tmp_path / "metrics.pt"
    torch.save({"w": torch.ones(2), "acc": np.float64(0.5), "hist": np.arange(4, dtype=np.int32)}, path)
    from evalguard.loading.allowlist import AllowList
    from evalguard.loading.formats import scan_torch_zip
    from evalguard.loading.safe_load import vet

    registered = {name for _obj, name in vet(path, scan_torch_zip(path), AllowList(), kind="pickle")}
    assert "numpy.dtype" in registered  # vetted and allowed, not refused
