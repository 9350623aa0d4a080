"""Issue 25, part A: no program from a model file runs in the auditing process.

A target whose loading needs a trial (TorchScript, ``.pt2``, pickles of numpy or ``--trust-module``
classes) is audited entirely in an isolated worker (Landlock, wall-clock and memory limits), also
when it is the only target. A crash, a hang or a limit hit there is that target's error, exit 2,
with the report still written. Each payload has a control showing that the format's own loader,
in a throwaway process, really does the bad thing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from evalguard import orchestrator, sandbox
from evalguard.subject import AuditOptions

REPO = Path(__file__).resolve().parents[2]


def cli(*args, cwd: Path, env_path: Path | None = None, shell_prefix: str = "", timeout: float = 300):
    """``evalguard ARGS`` in a fresh process (optionally after ``shell_prefix``, e.g. a ``ulimit``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), str(env_path or "")]))}
    command = " ".join([sys.executable, "-m", "evalguard", *(f"'{a}'" for a in args)])
    return subprocess.run(["bash", "-c", f"{shell_prefix}{command}"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def plain_python(code: str, cwd: Path, env_path: Path | None = None, timeout: float = 60):
    """The format's own loader, in a throwaway process (the positive controls)."""
    env = {**os.environ, "PYTHONPATH": str(env_path or "")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=timeout)


def report_target(path: Path) -> dict:
    report = json.loads(path.read_text())
    (target,) = report["targets"]
    return target


class Spin(nn.Module):
    """Integer ops only (every one pure), in a loop that never ends."""

    def forward(self, x):
        i = 0
        while i >= 0:
            i = (i + 1) % 7
        return x


class Hoard(nn.Module):
    """Pure ops that ask for 16 GiB."""

    def forward(self, x):
        return x + torch.zeros(1 << 32).sum()


class Noisy(nn.Module):
    """Random after eval(): only a forward that really runs shows it."""

    def forward(self, x):
        return x + torch.rand_like(x)


def script(model: nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(model), str(path))
    return path


@pytest.fixture
def crash_package(tmp_path):
    """A package whose module class dereferences NULL in forward (a native crash)."""
    root = tmp_path / "src" / "evalguard_crashpkg"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "models.py").write_text(textwrap.dedent("""
        import ctypes
        import os

        import torch.nn as nn

        FORWARD_PIDS = []


        class Crash(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)

            def forward(self, x):
                FORWARD_PIDS.append(os.getpid())
                if os.environ.get("CRASH_IN_FORWARD"):
                    ctypes.string_at(0)
                return self.fc(x)
    """))
    code = ("import torch; from evalguard_crashpkg.models import Crash; "
            "m = Crash().eval(); torch.save(m, 'crash.pt')")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True,
                   env={**os.environ, "PYTHONPATH": str(tmp_path / "src")})
    return tmp_path / "src"


def test_control_native_crash_in_forward_kills_a_plain_load(tmp_path, crash_package):
    done = plain_python("""
        import os, torch
        os.environ["CRASH_IN_FORWARD"] = "1"
        m = torch.load("crash.pt", weights_only=False)
        m(torch.randn(2, 4))
    """, tmp_path, crash_package)
    assert done.returncode == -11


def test_native_crash_in_forward_is_the_targets_error_and_the_report_is_written(tmp_path, crash_package,
                                                                                monkeypatch):
    monkeypatch.setenv("CRASH_IN_FORWARD", "1")
    done = cli("check", "crash.pt", "--trust-module", "evalguard_crashpkg", "--input-shape", "2x4", "--no-onnx",
               "--format", "json", "--output", "r.json", cwd=tmp_path, env_path=crash_package)
    assert done.returncode == 2, done.stderr
    target = report_target(tmp_path / "r.json")
    assert target["status"] == "error"
    assert "SIGSEGV" in target["detail"] and "segmentation fault" in target["detail"]
    assert "error: crash.pt:" in done.stderr and "Traceback" not in done.stdout


def test_no_forward_runs_in_the_auditing_process(tmp_path, crash_package, monkeypatch):
    """The Python API, one target, no --isolate: the program still runs elsewhere."""
    monkeypatch.syspath_prepend(str(crash_package))
    from evalguard_crashpkg import models

    loads = []
    for owner, name in [(torch.jit, "load"), (torch.export, "load")]:
        real = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, _real=real, **k: (loads.append(os.getpid()), _real(*a, **k))[1])
    noisy = script(Noisy().eval(), tmp_path / "ts.pt")
    program = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(nn.Linear(4, 2).eval(), (torch.randn(2, 4),)), str(program))
    from evalguard.catalogue import load_catalogue

    options = AuditOptions(selected=frozenset(load_catalogue()), trust_modules=("evalguard_crashpkg",),
                           onnx_enabled=False,
                           input_shapes=((2, 4),))
    monkeypatch.chdir(tmp_path)
    report = orchestrator.audit(["crash.pt", str(noisy), str(program)], options)
    assert [t.status for t in report.targets] == ["audited", "audited", "audited"], [t.detail for t in report.targets]
    assert {f.rule for f in report.findings if f.location.path == str(noisy)} & {"EG103", "EG104"}   # it ran
    assert loads == [] and models.FORWARD_PIDS == []   # ... but never here
    assert report.metadata["execution"]["isolated"] is True


def test_control_integer_loop_never_returns_under_plain_jit_load(tmp_path):
    script(Spin(), tmp_path / "spin.pt")
    with pytest.raises(subprocess.TimeoutExpired):
        plain_python("import torch; torch.jit.load('spin.pt')(torch.randn(2))", tmp_path, timeout=5)


def test_hanging_forward_is_killed_at_the_timeout(tmp_path):
    script(Spin(), tmp_path / "spin.pt")
    done = cli("check", "spin.pt", "--input-shape", "2x4", "--no-onnx", "--timeout", "3", "--format", "json",
               "--output", "r.json", cwd=tmp_path)
    assert done.returncode == 2
    target = report_target(tmp_path / "r.json")
    assert target["status"] == "error" and "timed out after 3s (--timeout)" in target["detail"]


def test_memory_limit_hit_is_named_as_such(tmp_path):
    script(Hoard(), tmp_path / "hoard.pt")
    done = cli("check", "hoard.pt", "--input-shape", "2x4", "--no-onnx", "--memory-limit", "2G", cwd=tmp_path)
    assert done.returncode == 2
    assert "error: hoard.pt: exceeded --memory-limit (2.0 GiB)" in done.stderr, done.stderr


@pytest.mark.parametrize("cap", ["ulimit -v 4000000; ", ""])
@pytest.mark.parametrize("limit", [[], ["--memory-limit", "2G"], ["--memory-limit", "4G"], ["--memory-limit", "8G"]])
def test_trial_loads_and_workers_work_under_an_address_space_cap(tmp_path, cap, limit):
    """A numpy checkpoint (trial load) and a TorchScript program (worker) under ``ulimit -v``."""
    import numpy as np

    torch.save({"model": nn.Linear(4, 2).state_dict(), "hist": np.arange(3.0)}, tmp_path / "np.pt")
    (tmp_path / "arch.py").write_text("import torch.nn as nn\n\ndef build():\n    return nn.Linear(4, 2)\n")
    script(nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval(), tmp_path / "ts.pt")
    done = cli("check", "ts.pt", "np.pt", "--model", "arch.py:build", "--input-shape", "2x4", "--no-onnx",
               *limit, "--format", "json", "--output", "r.json", cwd=tmp_path, shell_prefix=cap)
    report = json.loads((tmp_path / "r.json").read_text())
    statuses = {t["path"]: (t["status"], t.get("detail")) for t in report["targets"]}
    assert statuses["ts.pt"][0] == "audited", statuses
    assert statuses["np.pt"][0] == "audited", statuses
    assert done.returncode in (0, 1), done.stderr


def test_a_child_without_room_for_its_limits_says_why(tmp_path):
    code = textwrap.dedent("""
        import resource
        from evalguard import sandbox
        size = sandbox._address_space()
        resource.setrlimit(resource.RLIMIT_AS, (size + (32 << 20), size + (32 << 20)))
        try:
            sandbox.run_isolated("evalguard.sandbox:landlock_status")
        except sandbox.SandboxError as exc:
            print(exc.reason, exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.startswith("limits "), (done.stdout, done.stderr)
    assert "leaves no room" in done.stdout


def test_the_trial_child_is_confined_and_limited():
    if sandbox.landlock_abi() <= 0:
        pytest.skip(sandbox.landlock_status())
    import resource

    cap = sandbox.run_isolated("resource:getrlimit", resource.RLIMIT_AS,
                               limits=sandbox.Limits(memory_bytes=1 << 30))
    assert cap[0] == cap[1] and cap[0] < sandbox._address_space() + (2 << 30)
