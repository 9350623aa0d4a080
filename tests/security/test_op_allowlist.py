"""Issue 25: the reviewed op list (``evalguard/loading/ops.toml``) and custom-class names.

Every aten and quantized op of the installed torch is classified, allowed or excluded, each family
with its reason; a new torch with an unclassified op fails here until someone reviews it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from evalguard.loading.program_scan import REVIEWED_NAMESPACES, op_table, pure_ops

REPO = Path(__file__).resolve().parents[2]


def installed_ops(namespace: str) -> set[str]:
    return {s.name.split("::", 1)[1] for s in torch._C._jit_get_all_schemas()
            if s.name.startswith(namespace + "::")} - {""}


def classified(namespace: str) -> tuple[set[str], set[str]]:
    table = op_table()[namespace]
    allowed = {op for family in table.get("allowed", {}).values() for op in family["ops"]}
    excluded = {op for family in table.get("excluded", {}).values() for op in family["ops"]}
    return allowed, excluded


@pytest.mark.parametrize("namespace", ["aten", "quantized"])
def test_every_installed_op_is_reviewed(namespace):
    allowed, excluded = classified(namespace)
    unreviewed = installed_ops(namespace) - allowed - excluded
    assert not unreviewed, (f"torch {torch.__version__} has {namespace} ops that ops.toml does not classify; "
                            f"review them and add each to a family: {sorted(unreviewed)}")
    assert not allowed & excluded


def test_every_family_says_why():
    for namespace, table in op_table().items():
        assert namespace in REVIEWED_NAMESPACES
        for kind, families in table.items():
            assert kind in ("allowed", "excluded")
            for name, family in families.items():
                assert len(family["reason"]) > 30 and family["ops"], f"{namespace}.{kind}.{name}"


@pytest.mark.parametrize("op", ["_reshape_alias", "_reshape_alias_copy", "set_", "_unsafe_index", "_unsafe_index_put",
                                "_local_scalar_dense", "from_file", "_nested_view_from_buffer", "sparse_coo_tensor",
                                "max_pool2d_with_indices_backward", "_copy_from", "_index_put_impl_"])
def test_unchecked_ops_are_not_pure(op):
    allowed, excluded = classified("aten")
    assert op not in pure_ops()["aten"] and op in excluded


@pytest.mark.parametrize("op", ["as_strided", "view", "reshape", "_unsafe_view", "index_select", "linear",
                                "_native_multi_head_attention", "quantize_per_tensor", "warn"])
def test_checked_ops_stay_allowed(op):
    assert op in pure_ops()["aten"]


@pytest.mark.parametrize("op", ["linear_dynamic", "linear_prepack", "linear_unpack", "conv2d", "conv2d_prepack",
                                "linear", "add", "quantized_lstm_cell_dynamic"])
def test_quantized_kernels_are_reviewed_and_allowed(op):
    assert op in pure_ops()["quantized"]


class AliasRead(nn.Module):
    """``_reshape_alias`` sets sizes and strides without checking them against the storage."""

    def forward(self, x):
        y = torch.ops.aten._reshape_alias(x, [1 << 28], [1])
        return y.sum().reshape(1) + x[:, 0]


def test_control_reshape_alias_reads_out_of_bounds_under_plain_jit_load(tmp_path):
    torch.jit.save(torch.jit.script(AliasRead()), str(tmp_path / "alias.pt"))
    code = "import torch; m = torch.jit.load('alias.pt'); print(m(torch.randn(2, 4)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == -11   # 1 GiB read from an 8-float storage


def evalguard(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "evalguard", "check", *args, "--format", "json",
                           "--output", "r.json", "--no-onnx"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    return done, json.loads((tmp_path / "r.json").read_text())


def test_reshape_alias_is_refused_eg904_without_running(tmp_path):
    torch.jit.save(torch.jit.script(AliasRead()), str(tmp_path / "alias.pt"))
    done, report = evalguard(tmp_path, "alias.pt", "--input-shape", "2x4")
    assert done.returncode == 2
    (finding,) = [f for f in report["findings"] if f["rule"] == "EG904"]
    assert "_reshape_alias" in finding["message"]


def test_dynamic_int8_model_is_not_taken_for_a_custom_namespace(tmp_path):
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    torch.jit.save(torch.jit.trace(quantized, torch.randn(2, 8)), str(tmp_path / "q.pt"))
    done, report = evalguard(tmp_path, "q.pt", "--input-shape", "2x8")
    rules = {f["rule"] for f in report["findings"]}
    assert not rules & {"EG901", "EG902", "EG904", "EG905"}, report["findings"]
    assert report["targets"][0]["status"] == "audited"


# -- custom-class names resolve as torch resolves them --------------------------------------------

def _with_members(source: Path, target: Path, extra: dict[str, str], replace: dict[str, tuple[str, str]] = ()):
    """A copy of a TorchScript zip with ``extra`` members added and ``(old, new)`` text replaced."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        prefix = old.namelist()[0].split("/", 1)[0] + "/"
        for info in old.infolist():
            data = old.read(info)
            inner = info.filename[len(prefix):]
            if inner in dict(replace):
                before, after = dict(replace)[inner]
                data = data.decode().replace(before, after).encode()
            new.writestr(info, data)
        for inner, text in extra.items():
            new.writestr(prefix + inner, text)
    return target


DECOY = textwrap.dedent("""
    class LinearPackedParamsBase(Module):
      __parameters__ = []
      __buffers__ = []
      def forward(self: __torch__.torch.classes.quantized.LinearPackedParamsBase) -> int:
        return 1
""")


def test_archive_code_under_torch_classes_is_not_the_archives_own(tmp_path):
    torch.jit.save(torch.jit.script(nn.Linear(4, 2)), str(tmp_path / "plain.pt"))
    decoyed = _with_members(tmp_path / "plain.pt", tmp_path / "decoy.pt",
                            {"code/__torch__/torch/classes/quantized.py": DECOY})
    from evalguard.loading.archive import Archive
    from evalguard.loading.program_scan import scan_torchscript_code

    with Archive.open_path(decoyed) as archive:
        problems = scan_torchscript_code(archive)
    assert any("__torch__.torch.classes.quantized.LinearPackedParamsBase defined in the archive" in p
               for p in problems), problems


def test_unreviewed_custom_class_reference_is_refused(tmp_path):
    torch.jit.save(torch.jit.script(nn.Linear(4, 2)), str(tmp_path / "plain.pt"))
    with zipfile.ZipFile(tmp_path / "plain.pt") as archive:
        code = next(n for n in archive.namelist()   # linear.py, or a mangled copy if Linear was scripted before
                    if "/code/" in n and n.endswith(".py") and b"return torch.linear(" in archive.read(n))
        inner = code.split("/", 1)[1]
    _with_members(tmp_path / "plain.pt", tmp_path / "odd.pt",
                  {"code/__torch__/torch/classes/evil.py": DECOY.replace("quantized", "evil")},
                  {inner: ("return torch.linear(", "_0 = __torch__.torch.classes.evil.LinearPackedParamsBase\n"
                           "    return torch.linear(")})
    done, report = evalguard(tmp_path, "odd.pt", "--input-shape", "2x4")
    assert done.returncode == 2
    (finding,) = [f for f in report["findings"] if f["rule"] == "EG904"]
    assert "torch.classes.evil.LinearPackedParamsBase" in finding["message"]
