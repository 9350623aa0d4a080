"""``--executor ray``: a pool of warm Ray actors, each auditing one target at a time in a forked child.

The tests that start Ray are marked ``ray`` and skip where it is not installed (it is the optional
extra ``evalguard[ray]``, not part of the test extra); the flag errors run everywhere. The cluster
test starts a head and two worker nodes on 127.0.0.1 with ``ray start --block`` and stops exactly
those processes at the end.
"""
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalguard.errors import UsageError
from evalguard.execution import build_execution
from evalguard.execution.ray_tasks import Request, check_reachable, unmet

FACTORY = '''
import os
import signal
import time

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.drop = nn.Dropout(0.5)
        self.register_buffer("behaviour", torch.tensor(0))

    def forward(self, x):
        mode = int(self.behaviour)
        if mode == 1:
            os.abort()
        if mode == 2:
            time.sleep(3600)
        if mode == 4:                                   # takes its Ray actor down, every time
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(60)
        if mode == 5 and not os.path.exists("flaky.done"):   # takes its actor down once
            open("flaky.done", "w").close()
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(60)
        return self.drop(self.fc(x))


def build():
    return Net()
'''
BEHAVIOURS = {"good": 0, "abort": 1, "hang": 2, "killer": 4, "flaky": 5, "queued1": 0, "queued2": 0}
COMMON = ("--model", "factory.py:build", "--input-shape", "2x8", "--no-onnx", "--format", "json")
SRC = str(Path(__file__).resolve().parents[1])


@pytest.fixture
def models(tmp_path):
    import importlib.util

    import torch

    (tmp_path / "factory.py").write_text(FACTORY)
    spec = importlib.util.spec_from_file_location("_eg_ray_factory", tmp_path / "factory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, behaviour in BEHAVIOURS.items():
        torch.manual_seed(0)
        model = module.build()
        model.behaviour.fill_(behaviour)
        torch.save(model.state_dict(), tmp_path / f"{name}.pt")
    return tmp_path


def evalguard(cwd, *args, timeout=600):
    """``evalguard ARGS`` in its own process (Ray's driver state never leaks between tests)."""
    env = {**_ray_env(), "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("RAY_ADDRESS", None)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "evalguard", "check", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def _ray_env() -> dict:
    """The test cluster and its driver run without Ray's token authentication (loopback only)."""
    return {**os.environ, "RAY_AUTH_MODE": "disabled"}


def _targets(out: str) -> dict:
    return {t["path"]: t for t in json.loads(out)["targets"]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ without Ray
def test_ray_flag_errors():
    with pytest.raises(UsageError, match="--ray-address needs --executor ray"):
        build_execution(ray_address="ray://head:10001")
    with pytest.raises(UsageError, match="drop --no-isolate"):
        build_execution(isolate=False, executor="ray")
    with pytest.raises(UsageError, match="--retries needs --executor ray"):
        build_execution(retries=1)
    with pytest.raises(UsageError, match="0 or more"):
        build_execution(executor="ray", retries=-1)
    assert build_execution(executor="ray", retries=2).retries == 2
    assert build_execution(executor="ray").isolated(1) is True


def test_missing_ray_is_one_usage_error_line(run_cli, models, monkeypatch):
    monkeypatch.chdir(models)
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray -> ImportError
    code, _, err = run_cli("check", "good.pt", *COMMON, "--executor", "ray")
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith("error: ") and "pip install 'evalguard[ray]'" in line


def test_unreachable_address_is_refused_at_once():
    started = time.monotonic()
    with pytest.raises(UsageError, match="no Ray cluster answers there"):
        check_reachable(f"127.0.0.1:{_free_port()}")
    assert time.monotonic() - started < 30
    with pytest.raises(UsageError, match="expected local, auto, HOST:PORT"):
        check_reachable("somewhere")


def test_a_request_no_node_can_meet_names_the_resource():
    nodes = [{"Alive": True, "Resources": {"CPU": 4.0, "memory": 8 << 30}},
             {"Alive": True, "Resources": {"CPU": 2.0, "memory": 16 << 30}},
             {"Alive": False, "Resources": {"CPU": 64.0, "memory": 1 << 40, "GPU": 8.0}}]
    assert unmet(Request(cpus=2, memory=12 << 30), nodes) is None
    problem = unmet(Request(cpus=1, memory=64 << 30), nodes)
    assert "--memory-limit" in problem and "64.0 GiB" in problem and "largest: 16.0 GiB" in problem
    assert "--device cuda" in unmet(Request(cpus=1, gpus=1), nodes)
    assert "CPU" in unmet(Request(cpus=8), nodes)
    assert "all of" in unmet(Request(cpus=4, memory=12 << 30), nodes)     # each half on another node


# ------------------------------------------------------------------ with Ray
def _ray_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


@pytest.mark.ray
@pytest.mark.skipif(not _ray_installed(), reason="Ray is the optional extra evalguard[ray]; not installed")
def test_private_instance_reports_like_local_workers_and_times_from_the_start(models):
    code, out, _err, _ = evalguard(models, "good.pt", *COMMON, "--no-isolate")
    alone = _targets(out)["good.pt"]
    queued = ["good.pt", "abort.pt", "queued1.pt", "queued2.pt"]
    code, out, err, _ = evalguard(models, "hang.pt", *queued, *COMMON, "--executor", "ray", "--timeout", "20")
    report = json.loads(out)              # stdout holds the report only: Ray's own messages go to stderr
    targets = _targets(out)
    assert code == 2, err
    assert report["run"]["execution"] == {"isolated": True, "jobs": 1, "executor": "ray"}
    assert targets["good.pt"]["coverage"] == alone["coverage"]
    assert targets["abort.pt"]["status"] == "error" and "SIGABRT" in targets["abort.pt"]["detail"]
    hung = targets["hang.pt"]
    assert hung["status"] == "error" and "timed out after 20s" in hung["detail"]
    # one actor: the others wait behind the 20 s hang, and are never charged for it (--timeout
    # counts from when a target starts, not from when it was queued)
    assert all(targets[name]["status"] == "audited" for name in ("good.pt", "queued1.pt", "queued2.pt")), err
    assert all(targets[name]["usage"]["seconds"] < 20 for name in queued)
    assert "Fatal Python error: Aborted" in err          # the worker's own output reaches the driver


@pytest.mark.ray
@pytest.mark.skipif(not _ray_installed(), reason="Ray is the optional extra evalguard[ray]; not installed")
def test_unsatisfiable_memory_and_unreachable_address_are_usage_errors(models):
    code, out, err, seconds = evalguard(models, "good.pt", *COMMON, "--executor", "ray", "--memory-limit", "64T")
    assert code == 2 and out == ""
    assert "--memory-limit" in err and "memory for tasks" in err and "largest" in err
    code, out, err, seconds = evalguard(models, "good.pt", *COMMON, "--executor", "ray",
                                        "--ray-address", f"127.0.0.1:{_free_port()}")
    assert code == 2 and seconds < 30 and "no Ray cluster answers there" in err


@pytest.fixture
def cluster(tmp_path_factory):
    """A head and two worker nodes (one CPU each) on 127.0.0.1; exactly these processes are stopped."""
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    common = ["--block", "--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    procs = [subprocess.Popen([ray_bin, "start", "--head", "--port", str(port), "--temp-dir", str(temp),
                               "--include-dashboard", "false", *common],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env=_ray_env())]
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                check_reachable(f"127.0.0.1:{port}")
                break
            except UsageError:
                if time.monotonic() > deadline:
                    pytest.fail("the Ray head did not start in 120 s")
                time.sleep(1)
        for _ in range(2):
            procs.append(subprocess.Popen([ray_bin, "start", "--address", f"127.0.0.1:{port}", *common],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True, env=_ray_env()))
        time.sleep(15)
        yield f"127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):             # `ray start --block` stops its node on SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.ray
@pytest.mark.skipif(not _ray_installed(), reason="Ray is the optional extra evalguard[ray]; not installed")
def test_cluster_lost_actor_fails_only_its_target_and_retries_are_reported(models, cluster):
    code, out, err, _ = evalguard(models, "good.pt", "killer.pt", "flaky.pt", *COMMON, "--executor", "ray",
                                  "--ray-address", cluster, "--jobs", "2", "--retries", "1", "--timeout", "120")
    assert out, err
    targets = _targets(out)
    assert code == 2, err
    assert targets["good.pt"]["status"] == "audited"
    killer = targets["killer.pt"]
    assert killer["status"] == "error" and "the Ray actor auditing it died" in killer["detail"]
    assert "after 2 attempts, --retries 1" in killer["detail"]
    flaky = targets["flaky.pt"]
    assert flaky["status"] == "audited" and "audited on attempt 2 (--retries 1)" in flaky["detail"]
    assert {c["status"] for c in flaky["coverage"].values()} >= {"passed"}


@pytest.mark.ray
@pytest.mark.skipif(not _ray_installed(), reason="Ray is the optional extra evalguard[ray]; not installed")
def test_terminal_progress_shows_the_step_each_ray_target_reached(models, monkeypatch):
    import io

    from evalguard.catalogue import load_catalogue
    from evalguard.execution import Target
    from evalguard.execution.progress import Progress
    from evalguard.execution.ray_tasks import run_on_ray
    from evalguard.subject import AuditOptions

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.chdir(models)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("COLUMNS", "200")
    options = AuditOptions(selected=frozenset(load_catalogue()), input_shapes=((2, 8),), onnx_enabled=False)
    targets = [Target(i, name, name, planned=True, architecture="factory.py:build")
               for i, name in enumerate(("hang.pt", "good.pt"))]
    terminal = Terminal()
    with Progress(2, stream=terminal) as progress:
        results = run_on_ray(targets, options, {}, build_execution(executor="ray", timeout=8), progress)
    assert results[targets[0]][0].status == "error" and results[targets[1]][0].status == "audited"
    shown = {part.split("hang.pt: ")[1].rsplit(" ", 1)[0] for part in terminal.getvalue().split("\r\x1b[K")
             if "hang.pt: " in part}
    assert "eval-mode" in shown, shown        # the step the hang is in, asked of the actor while it runs
