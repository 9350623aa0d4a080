"""Red-team round 3 against the program scans (TorchScript code, .pt2 graph JSON) and the worker.

Each attack has a positive control: the format's own loader, in a throwaway subprocess, really
does the harm (reads past a storage, loops forever); then evalguard, run as a user through the
CLI, refuses the file (EG904/EG905) or stops it within a bound.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
LEAK = 4096     # elements read from a 4-element storage
FLATTEN = rb"torch\.flatten\((\w+)\)"


def evalguard(cwd: Path, target: str, *args: str, shape: str = "1x4",
              timeout: int = 300) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "evalguard", "check", target, "--input-shape", shape, "--no-onnx",
                           "--format", "json", "-o", "r.json", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    report = json.loads((cwd / "r.json").read_text()) if (cwd / "r.json").exists() else {}
    return done, report


def rules(report: dict) -> set[str]:
    return {f["rule"] for f in report.get("findings", [])}


def rewrite_code(src: Path, dst: Path, old: bytes, new: bytes) -> Path:
    """Copy a TorchScript archive with one regex edit in its source (debug tables dropped)."""
    with zipfile.ZipFile(src) as archive:
        members = [(i.filename, archive.read(i.filename)) for i in archive.infolist()]
    writer = torch._C.PyTorchFileWriter(str(dst))
    edited = False
    for name, data in members:
        inner = name.split("/", 1)[1]
        if inner in ("version", ".data/version") or inner.endswith(".debug_pkl"):
            continue
        if inner.startswith("code/") and inner.endswith(".py") and re.search(old, data):
            data, edited = re.sub(old, new, data), True
        writer.write_record(inner, data, len(data))
    writer.write_end_of_file()
    assert edited, f"{old!r} not in the program"
    return dst


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        y = self.lin(x).contiguous()
        return torch.flatten(y) * 1.0 + y.sum() * 0.0


class WithDecoy(Tiny):
    @torch.jit.export
    def _reshape_alias(self, y: torch.Tensor) -> torch.Tensor:   # only its name matters
        return y


def scripted(tmp_path: Path, module: nn.Module, name: str) -> Path:
    path = tmp_path / name
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    return path


def reads_out_of_bounds(path: Path) -> None:
    """Positive control: torch's own loader runs the program and returns LEAK values from a 4-float storage."""
    code = (f"import torch; m = torch.jit.load({str(path)!r}); y = m(torch.ones(1, 4)); "
            f"assert y.numel() == {LEAK}, y.shape; print('leaked', y.numel())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "leaked" in done.stdout, done.stderr[-2000:]


def method_shadow(tmp_path: Path) -> Path:
    """a09: the archive defines a method named ``_reshape_alias``; forward calls it as a tensor method."""
    base = scripted(tmp_path, WithDecoy(), "decoy.pt")
    return rewrite_code(base, tmp_path / "shadow.pt", FLATTEN,
                        rb"\1._reshape_alias([%d], [1])" % LEAK)


def getattr_call(tmp_path: Path) -> Path:
    """a21: ``getattr(y, "_reshape_alias")(...)``: the call's target is itself a call."""
    base = scripted(tmp_path, Tiny(), "plain.pt")
    return rewrite_code(base, tmp_path / "getattr.pt", FLATTEN,
                        rb'getattr(\1, "_reshape_alias")([%d], [1])' % LEAK)


@pytest.mark.parametrize("build", [method_shadow, getattr_call], ids=["a09-method-shadow", "a21-getattr-call"])
def test_excluded_op_through_a_method_name_is_refused(tmp_path, build):
    target = build(tmp_path)
    reads_out_of_bounds(target)
    done, report = evalguard(tmp_path, target.name)
    assert done.returncode == 2, done.stderr[-2000:]
    messages = [f["message"] for f in report["findings"] if f["rule"] == "EG904"]
    assert messages and any("_reshape_alias" in m for m in messages), report
    assert not rules(report) & {"EG103", "EG402"}, "the program must not have run"


def test_archive_method_named_like_an_excluded_op_is_refused_even_unused(tmp_path):
    target = scripted(tmp_path, WithDecoy(), "decoy.pt")
    done, report = evalguard(tmp_path, target.name)
    assert done.returncode == 2
    messages = [f["message"] for f in report["findings"] if f["rule"] == "EG904"]
    assert any("shadows the excluded aten op _reshape_alias" in m for m in messages), report


class Helper(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.blocks = nn.ModuleList([nn.ReLU(), nn.Identity()])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.features(x)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = Helper()
        self.bn = nn.BatchNorm2d(2)
        self.head = nn.Linear(2, 3)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=[2, 3])

    def forward(self, x):
        y = self.bn(self.body.features(x.reshape(1, 1, 2, 2)))
        parts: dict[str, torch.Tensor] = {"pooled": self._pool(y)}
        return self.head(list(parts.values())[0])


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        out, _ = self.lstm(x.unsqueeze(1))
        return self.head(out[:, -1])


@pytest.mark.parametrize("module", [SmallCNN, Recurrent], ids=["cnn-with-helpers", "lstm"])
def test_benign_programs_still_audit(tmp_path, module):
    target = scripted(tmp_path, module(), "benign.pt")
    done, report = evalguard(tmp_path, target.name)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert not {r for r in rules(report) if r.startswith("EG9")}, report["findings"]


def small_mlp_pt2(path: Path) -> Path:
    mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    torch.export.save(torch.export.export(mlp, (torch.randn(2, 16),)), str(path))
    return path


def with_nested_list(src: Path, dst: Path, depth: int) -> Path:
    """a19: the program JSON gains a key holding a list nested ``depth`` deep."""
    with zipfile.ZipFile(src) as archive:
        members = [(i.filename, archive.read(i.filename)) for i in archive.infolist()]
    writer = torch._C.PyTorchFileWriter(str(dst))
    for name, data in members:
        inner = name.split("/", 1)[1]
        if inner == ".data/version":
            continue
        if inner.startswith("models/") and inner.endswith(".json"):
            data = data.rstrip()[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
        writer.write_record(inner, data, len(data))
    writer.write_end_of_file()
    return dst


@pytest.mark.parametrize("depth", [900, 5000])
def test_deeply_nested_program_json_is_refused_not_a_crash(tmp_path, depth):
    target = with_nested_list(small_mlp_pt2(tmp_path / "mlp.pt2"), tmp_path / "deep.pt2", depth)
    done, report = evalguard(tmp_path, target.name, shape="2x16")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    (finding,) = report["findings"]
    assert finding["rule"] == "EG905" and "nested deeper than" in finding["message"], finding


def test_benign_pt2_still_audits(tmp_path):
    target = small_mlp_pt2(tmp_path / "mlp.pt2")
    done, report = evalguard(tmp_path, target.name, shape="2x16")
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert not {r for r in rules(report) if r.startswith("EG9")}, report["findings"]


class Forever(nn.Module):
    """a22: forward loops forever on integer ops (every op allowed)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        i = 0
        while i >= 0:
            i = (i + 1) % 1000
        return self.lin(x)


def _children(pid: int) -> set[int]:
    """The process tree under ``pid`` now (from /proc's ppid fields)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - tree
        tree |= frontier
    return tree


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _started_by(pid: int) -> set[int]:
    """Processes, orphaned or not, whose environment names ``pid`` as the evalguard that started them."""
    from evalguard.sandbox import PARENT_PID_ENV

    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"{PARENT_PID_ENV}={pid}".encode() in environ and _alive(int(entry.name)):
                found.add(int(entry.name))
    return found


def test_endless_forward_really_loops_in_torch(tmp_path):
    target = scripted(tmp_path, Forever(), "forever.pt")
    code = f"import torch; torch.jit.load({str(target)!r})(torch.ones(1, 4)); print('returned')"
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=8)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux")
@pytest.mark.parametrize(("signum", "copies"), [(15, 1), (9, 1), (9, 2)],
                         ids=["SIGTERM", "SIGKILL", "SIGKILL-fork-server"])
def test_killed_cli_leaves_no_worker_behind(tmp_path, signum, copies):
    target = scripted(tmp_path, Forever(), "forever.pt")
    names = [target.name]
    for n in range(1, copies):          # two targets: workers are forked from the fork server
        names.append(f"forever{n}.pt")
        (tmp_path / names[-1]).write_bytes(target.read_bytes())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = subprocess.Popen([sys.executable, "-m", "evalguard", "check", *names, "--input-shape", "1x4",
                            "--no-onnx", "--format", "json", "-o", "r.json"],
                           cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not _started_by(cli.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = _started_by(cli.pid)
        assert workers, "no worker started"
        time.sleep(6)                       # torch imported, the forward spinning
        tree = _children(cli.pid) | workers
        assert cli.poll() is None, "the CLI ended before it was killed"
        os.kill(cli.pid, signum)
        cli.wait(timeout=30)
        time.sleep(1.0)
        survivors = {pid for pid in tree if _alive(pid)} | _started_by(cli.pid)
        assert not survivors, f"processes outlived the killed CLI: {survivors}"
        if signum == 15:
            assert cli.returncode == 143 and b"Traceback" not in cli.stderr.read()
    finally:
        for pid in _started_by(cli.pid):   # never leave a spinning worker behind, even on failure
            os.kill(pid, 9)
        if cli.poll() is None:
            cli.kill()


def test_default_worker_limit_scales_with_the_target(tmp_path):
    from evalguard.execution import DEFAULT_TIMEOUT, ExecutionOptions, default_timeout, target_size

    tiny = scripted(tmp_path, Forever(), "forever.pt")
    assert default_timeout(target_size(str(tiny))) < 100            # a tiny looping program: ~90 s, not 900
    assert default_timeout(1 << 30) > 600                           # a 1 GiB model still gets most of 900 s
    assert default_timeout(20 << 30) == default_timeout(None) == DEFAULT_TIMEOUT
    assert ExecutionOptions(timeout=5.0).worker_timeout(1 << 40) == 5.0   # --timeout always wins
    assert target_size(str(tmp_path)) >= target_size(str(tiny))
