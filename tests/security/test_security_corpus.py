"""The red-team corpus (issue 20): every class of malicious file is refused or a clean error,
and no payload runs. Positive controls show each payload class WOULD run without the defence.

Each test gets its own marker path; the ``no_marker`` fixture fails the test if it appears.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import payloads as P
import pytest
import torch

from evalguard.errors import RefusedTarget, TargetError
from evalguard.loading import load_target
from evalguard.subject import AuditOptions


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "marker"
    yield path
    assert not path.exists(), "a payload ran"


def refusal(path, **options) -> RefusedTarget:
    with pytest.raises(RefusedTarget) as info:
        load_target(str(path), AuditOptions(**options))
    assert len(str(info.value).splitlines()) == 1
    return info.value


def rules(exc: RefusedTarget) -> set[str]:
    return {f.rule for f in exc.findings}


def evidence_text(exc: RefusedTarget) -> str:
    return json.dumps([f.evidence for f in exc.findings] + [f.message for f in exc.findings])


def control(code: str, *args, timeout=120) -> subprocess.CompletedProcess:
    """Run ``code`` in a plain child (no evalguard): what loading without the defence does."""
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False)


# -- TorchScript: code-bearing archives -------------------------------------------------------

def test_torchscript_setstate_from_file_is_refused_eg904(tmp_path, marker):
    path = P.torchscript(tmp_path, P.SetStateFromFile(str(marker)), "setstate.pt")
    exc = refusal(path)
    assert rules(exc) == {"EG904"}
    assert "from_file" in evidence_text(exc) and "__setstate__" in evidence_text(exc)


def test_torchscript_forward_from_file_is_refused_eg904(tmp_path, marker):
    path = P.torchscript(tmp_path, P.ForwardFromFile(str(marker)), "forward.pt")
    exc = refusal(path)
    assert rules(exc) == {"EG904"}
    assert "torch.from_file" in evidence_text(exc) and "forward" in evidence_text(exc)


def test_torchscript_custom_op_namespace_is_refused(tmp_path, marker):
    exc = refusal(P.torchscript_custom_op(tmp_path))
    assert rules(exc) == {"EG904"} and "custom op namespace" in evidence_text(exc)


def test_control_torchscript_payloads_run_under_plain_jit_load(tmp_path):
    setstate, forward = tmp_path / "setstate_ran", tmp_path / "forward_ran"
    a = P.torchscript(tmp_path, P.SetStateFromFile(str(setstate)), "a.pt")
    b = P.torchscript(tmp_path, P.ForwardFromFile(str(forward)), "b.pt")
    result = control("import sys, torch; torch.jit.load(sys.argv[1]); torch.jit.load(sys.argv[2])(torch.ones(1))",
                     a, b)
    assert result.returncode == 0, result.stderr[-500:]
    assert setstate.exists() and forward.exists()


# -- torch.export programs --------------------------------------------------------------------

def test_pt2_file_reading_op_in_graph_is_refused_eg904(tmp_path, marker):
    path = P.pt2_with(tmp_path, "from_file.pt2", lambda n, d: [
        (n, P.edit_program(d, P.first_node_target("torch.ops.aten.from_file.default")) if "models/" in n else d)])
    exc = refusal(path)
    assert "EG904" in rules(exc) and "aten.from_file" in evidence_text(exc)


def test_pt2_custom_namespace_op_is_refused_eg904(tmp_path, marker):
    path = P.pt2_with(tmp_path, "custom.pt2", lambda n, d: [
        (n, P.edit_program(d, P.first_node_target("torch.ops.evil.run.default")) if "models/" in n else d)])
    assert "custom op namespace" in evidence_text(refusal(path))


@pytest.mark.parametrize("trick", ["duplicate", "case variant", "parent path", "absolute path"])
def test_pt2_member_tricks_are_refused_eg905(tmp_path, trick, marker):
    evil = P.evil_data_pkl(marker)

    def edit(name, data):
        if not name.endswith("data/sample_inputs/model.pt"):
            return [(name, data)]
        variants = {"duplicate": name, "case variant": name.replace("sample_inputs", "SAMPLE_INPUTS"),
                    "parent path": "../" + name, "absolute path": "/" + name}
        return [(variants[trick], evil), (name, data)]
    exc = refusal(P.pt2_with(tmp_path, "trick.pt2", edit))
    assert rules(exc) == {"EG905"}


@pytest.mark.parametrize("extra", ["models/model.bin", "data/weights/decoy_weights_config.json",
                                   "data/constants/opaque_obj_0", "archive_format_v2"])
def test_pt2_members_outside_the_format_are_refused(tmp_path, extra, marker):
    exc = refusal(P.pt2_with(tmp_path, "extra.pt2", lambda n, d: [(n, d)] + (
        [(n.rsplit("/", 1)[0] + "/" + extra, P.evil_data_pkl(marker))] if n.endswith("archive_format") else [])))
    assert rules(exc) & {"EG905", "EG901"}


def test_pt2_alternative_archive_version_is_refused(tmp_path):
    exc = refusal(P.pt2_with(tmp_path, "version.pt2",
                             lambda n, d: [(n, b"1" if n.endswith("archive_version") else d)]))
    assert rules(exc) == {"EG905"}


@pytest.mark.parametrize("expr", ["7**7**10", "s0**(10**9)", "1" * 400])
def test_pt2_symbolic_bombs_are_refused_before_sympy(tmp_path, expr):
    path = P.pt2_with(tmp_path, "sym.pt2", lambda n, d: [
        (n, P.edit_program(d, P.first_expr(expr)) if "models/" in n else d)])
    start = time.monotonic()
    exc = refusal(path)
    assert time.monotonic() - start < 10
    assert "sympy" in evidence_text(exc)


def test_pt2_nested_sample_archive_payload_is_refused(tmp_path, marker):
    nested = P.clean_torch_save(tmp_path)
    inner = P.edit_zip(nested, tmp_path / "inner.pt",
                       lambda n, d: [(n, P.evil_data_pkl(marker) if n.endswith("data.pkl") else d)])
    path = P.pt2_with(tmp_path, "nested.pt2", lambda n, d: [
        (n, inner.read_bytes() if n.endswith("sample_inputs/model.pt") else d)])
    assert "EG901" in rules(refusal(path))


# -- archives: the bytes vetted are the bytes loaded ------------------------------------------

@pytest.mark.parametrize("build", [P.duplicate_member, P.case_variant_member, P.parent_relative_member,
                                   P.concatenated_archives], ids=["duplicate", "case", "dotdot", "concatenated"])
def test_ambiguous_torch_archives_are_refused_eg905(tmp_path, build, marker):
    exc = refusal(build(tmp_path, marker))
    assert rules(exc) == {"EG905"}


def test_legacy_magic_in_another_protocol_does_not_hide_the_payload(tmp_path, marker):
    exc = refusal(P.legacy_other_protocol_magic(tmp_path, marker))
    assert "EG901" in rules(exc) and "system" in evidence_text(exc)


def test_control_legacy_payload_runs_under_unrestricted_torch_load(tmp_path):
    ran = tmp_path / "ran"
    path = P.legacy_other_protocol_magic(tmp_path, ran)
    control("import sys, torch; torch.load(sys.argv[1], weights_only=False)", path)
    assert ran.exists()


# -- trusted packages and their gadgets -------------------------------------------------------

def test_trusted_numpy_does_not_admit_memmap(tmp_path, marker):
    exc = refusal(P.numpy_memmap(tmp_path, marker), trust_modules=("numpy",))
    assert "EG901" in rules(exc) and "memmap" in evidence_text(exc)


def test_control_memmap_payload_writes_a_file_when_unpickled(tmp_path):
    ran = tmp_path / "ran"
    path = P.numpy_memmap(tmp_path, ran)
    control("import sys, torch; torch.load(sys.argv[1], weights_only=False)", path)
    assert ran.exists()


def test_trusted_package_main_module_is_never_imported(tmp_path, marker, monkeypatch, run_cli):
    package = P.main_module_package(tmp_path, marker)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    path = P.main_module_pickle(tmp_path, package)
    code, out, _err = run_cli("check", path, "--trust-module", package, "--no-onnx", "--format", "json")
    report = json.loads(out)
    assert code != 0 and report["targets"][0]["status"] == "refused", report["targets"]
    assert "__main__" in json.dumps(report["findings"])


def test_control_importing_the_main_module_runs_it(tmp_path):
    ran = tmp_path / "ran"
    package = P.main_module_package(tmp_path, ran)
    result = control(f"import sys; sys.path.insert(0, sys.argv[1]); import {package}.__main__", tmp_path / "src")
    assert ran.exists() and result.returncode == 0


def test_forged_numpy_dtype_is_refused_statically(tmp_path):
    exc = refusal(P.forged_numpy_dtype(tmp_path))
    assert "EG901" in rules(exc) and "dtype" in evidence_text(exc)


def test_control_forged_numpy_dtype_crashes_a_plain_weights_only_load(tmp_path):
    path = P.forged_numpy_dtype(tmp_path)
    result = control("import sys, torch, numpy as np\n"
                     "from numpy.dtypes import ObjectDType\n"
                     "r = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, ObjectDType]\n"
                     "with torch.serialization.safe_globals(r):\n"
                     "    print(torch.load(sys.argv[1], weights_only=True))", path)
    assert result.returncode < 0  # killed by a signal (segmentation fault)


# -- folders ---------------------------------------------------------------------------------

def test_every_pickle_in_a_model_folder_is_vetted(tmp_path, marker):
    folder = P.folder_with_extra_pickles(tmp_path, marker)
    exc = refusal(folder)
    assert "EG901" in rules(exc)
    text = evidence_text(exc)
    assert "extra.pkl" in text and "pytorch_model.bin" in text


def test_control_extra_pickle_runs_when_unpickled(tmp_path):
    ran = tmp_path / "ran"
    folder = P.folder_with_extra_pickles(tmp_path, ran)
    control("import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())", folder / "extra.pkl")
    assert ran.exists()


# -- ONNX ------------------------------------------------------------------------------------

@pytest.mark.parametrize("location", ["../outside.bin", "/etc/hostname"])
def test_onnx_external_data_outside_the_folder_is_refused(tmp_path, location):
    (tmp_path / "outside.bin").write_bytes(b"\0" * 8)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    exc = refusal(P.onnx_model(model_dir, "m.onnx", location=location))
    assert rules(exc) == {"EG905"} and "outside" in evidence_text(exc)


def test_onnx_custom_domain_op_is_reported(tmp_path):
    exc = refusal(P.onnx_model(tmp_path, "m.onnx", domain="com.evil"))
    assert rules(exc) == {"EG904"} and "com.evil::Evil" in evidence_text(exc)


# -- resource bombs --------------------------------------------------------------------------

def test_zip_bomb_is_refused_without_inflating(tmp_path):
    path = P.zip_bomb(tmp_path)
    assert path.stat().st_size < 4 << 20
    start = time.monotonic()
    exc = refusal(path)
    assert time.monotonic() - start < 5 and rules(exc) == {"EG905"}


def test_tens_of_thousands_of_members_scan_in_linear_time(tmp_path):
    path = P.many_members(tmp_path)
    start = time.monotonic()
    with pytest.raises((RefusedTarget, TargetError)):
        load_target(str(path), AuditOptions())
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("func", ["bytearray", "range"])
def test_attacker_sized_constructors_are_refused(tmp_path, func):
    exc = refusal(P.sized_constructor(tmp_path, func, 10**12))
    assert "EG901" in rules(exc) and "size chosen by the file" in evidence_text(exc)


def test_twenty_thousand_names_are_decided_quickly(tmp_path):
    path = P.many_globals(tmp_path)
    start = time.monotonic()
    refusal(path)
    assert time.monotonic() - start < 15


def test_config_that_builds_a_huge_model_is_refused_before_building(tmp_path):
    exc = refusal(P.config_bomb(tmp_path))
    assert rules(exc) == {"EG905"} and "config.json" in evidence_text(exc)


def test_huge_safetensors_header_is_refused_unread(tmp_path):
    exc = refusal(P.safetensors_huge_header(tmp_path))
    assert rules(exc) == {"EG905"}


# -- the CLI: refusals are reports, never tracebacks or silent exits ------------------------

def test_cli_reports_a_torchscript_payload_and_runs_nothing(tmp_path, marker, run_cli):
    path = P.torchscript(tmp_path, P.SetStateFromFile(str(marker)), "setstate.pt")
    code, out, err = run_cli("check", path, "--no-onnx", "--format", "json")
    report = json.loads(out)
    assert report["targets"][0]["status"] == "refused"
    assert code == 2              # refused: not loaded, so not audited
    assert [f["rule"] for f in report["findings"]] == ["EG904"]
    assert "Traceback" not in err


# -- benign files still load -----------------------------------------------------------------

def test_benign_programs_and_archives_load_without_security_findings(tmp_path, as_worker):
    scripted = P.torchscript(tmp_path, torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval(), "ok.pt")
    traced = tmp_path / "traced.pt"
    torch.jit.save(torch.jit.trace(torch.nn.Linear(4, 2).eval(), torch.randn(1, 4)), str(traced))
    full = tmp_path / "full.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 2)), full)
    for path, kind in [(scripted, "torchscript"), (traced, "torchscript"), (P.clean_pt2(tmp_path), "exported-program"),
                       (full, "full-module-pickle")]:
        assert load_target(str(path), AuditOptions()).kind == kind
