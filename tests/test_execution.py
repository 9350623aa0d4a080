"""Worker-process isolation, --jobs, --timeout, --memory-limit, --shard and the progress line.

The broken targets are state_dicts for one factory whose forward misbehaves according to a
buffer saved in each file: 0 audits normally, 1 calls os.abort(), 2 hangs, 3 reserves 4 GiB.
"""
import io
import json

import pytest

from evalguard import engine, orchestrator
from evalguard.catalogue import load_catalogue
from evalguard.errors import UsageError
from evalguard.execution import (
    ExecutionOptions,
    Target,
    build_execution,
    parse_memory,
    parse_shard,
    shard_slice,
)
from evalguard.execution.progress import Progress
from evalguard.subject import AuditOptions

FACTORY = '''
import os
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
        if mode == 3:
            reserved = torch.empty(4 << 30, dtype=torch.uint8)   # address space only, never touched
            del reserved
        return self.drop(self.fc(x))


def build():
    return Net()
'''
BEHAVIOURS = {"good": 0, "abort": 1, "hang": 2, "alloc": 3}


@pytest.fixture
def models(tmp_path, monkeypatch):
    """good.pt, abort.pt, hang.pt, alloc.pt and the factory, in a folder that is the cwd."""
    import importlib.util

    import torch

    (tmp_path / "factory.py").write_text(FACTORY)
    spec = importlib.util.spec_from_file_location("_eg_exec_factory", tmp_path / "factory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, behaviour in BEHAVIOURS.items():
        torch.manual_seed(0)
        model = module.build()
        model.behaviour.fill_(behaviour)
        torch.save(model.state_dict(), tmp_path / f"{name}.pt")
    monkeypatch.chdir(tmp_path)
    return tmp_path


COMMON = ("--model", "factory.py:build", "--input-shape", "2x8", "--no-onnx", "--format", "json")


def _findings(report: dict, path: str) -> list[tuple]:
    return [(f["rule"], f["severity"], f["location"]["module"], f["message"])
            for f in report["findings"] if f["location"]["path"] == path]


def _target(report: dict, path: str) -> dict:
    [target] = [t for t in report["targets"] if t["path"] == path]
    return target


@pytest.mark.parametrize("fork_server", [True, False], ids=["fork-server", "spawned"])
def test_abort_and_hang_leave_the_good_target_intact(run_cli, models, monkeypatch, fork_server):
    from evalguard.execution import zygote

    monkeypatch.setattr("evalguard.execution.local.USE_FORK_SERVER", fork_server)
    forked = []
    real_start = zygote.ForkServer.start
    monkeypatch.setattr(zygote.ForkServer, "start",
                        lambda self, *args: forked.append(args) or real_start(self, *args))
    code, out, _ = run_cli("check", "good.pt", *COMMON, "--no-isolate")
    alone = json.loads(out)
    assert code == 1 and _findings(alone, "good.pt"), "the good model has findings of its own (EG101/EG102)"

    code, out, err = run_cli("check", "good.pt", "abort.pt", "hang.pt", *COMMON, "--timeout", "5")
    report = json.loads(out)
    assert code == 2
    assert _findings(report, "good.pt") == _findings(alone, "good.pt")
    assert _target(report, "good.pt")["status"] == "audited"
    assert _target(report, "good.pt")["coverage"] == _target(alone, "good.pt")["coverage"]

    aborted = _target(report, "abort.pt")
    assert aborted["status"] == "error"
    assert "killed by SIGABRT" in aborted["detail"] and "last step: eval-mode" in aborted["detail"]
    assert "peak RSS" in aborted["detail"]
    hung = _target(report, "hang.pt")
    assert hung["status"] == "error" and "timed out after 5s" in hung["detail"]
    assert {c["status"] for c in hung["coverage"].values()} == {"skipped"}, "nothing was checked on it"
    assert report["run"]["execution"]["isolated"] is True
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert any("abort.pt" in line and "SIGABRT" in line for line in errors)
    assert any("hang.pt" in line and "timed out" in line for line in errors)
    assert len(forked) == (3 if fork_server and zygote.available() else 0)


def test_memory_limit_fails_only_the_target_that_needs_more(run_cli, models):
    code, out, _ = run_cli("check", "good.pt", "alloc.pt", *COMMON)
    unlimited = json.loads(out)
    assert code == 1, "without a limit the 4 GiB reservation succeeds: both targets are audited"
    assert {t["status"] for t in unlimited["targets"]} == {"audited"}

    code, out, err = run_cli("check", "good.pt", "alloc.pt", *COMMON, "--memory-limit", "2G")
    report = json.loads(out)
    assert code == 2
    assert _target(report, "good.pt")["status"] == "audited"
    assert _findings(report, "good.pt") == _findings(unlimited, "good.pt")
    limited = _target(report, "alloc.pt")
    assert limited["status"] == "error" and "allocate memory" in limited["detail"]
    assert "error: " in err


def test_jobs_two_gives_the_same_report_as_one_process(run_cli, models):
    code_single, out, _ = run_cli("check", "good.pt", "alloc.pt", *COMMON, "--no-isolate")
    single = json.loads(out)
    code, out, _ = run_cli("check", "good.pt", "alloc.pt", *COMMON, "--jobs", "2")
    parallel = json.loads(out)
    assert code == code_single == 1
    assert parallel["findings"] == single["findings"]
    assert [t["path"] for t in parallel["targets"]] == ["good.pt", "alloc.pt"], "command-line order kept"
    assert parallel["run"]["execution"] == {"isolated": True, "jobs": 2}


def test_worker_usage_error_is_one_line(run_cli, models):
    code, out, err = run_cli("check", "good.pt", "alloc.pt", "--model", "no_such_module_xyz:build",
                             "--input-shape", "2x8", "--no-onnx")
    assert code == 2
    assert "Traceback" not in err
    assert "no_such_module_xyz" in out + err


@pytest.mark.parametrize("args, needle", [
    (("--shard", "3/2"), "--shard"),
    (("--shard", "two"), "--shard expects K/N"),
    (("--memory-limit", "lots"), "--memory-limit"),
    (("--jobs", "0"), "--jobs"),
    (("--timeout", "-1"), "--timeout"),
    (("--no-isolate", "--timeout", "5"), "need worker processes"),
    (("--memory-limit", "4G", "--device", "cuda"), "--device cuda"),
])
def test_execution_flag_errors(run_cli, models, args, needle):
    code, _, err = run_cli("check", "good.pt", *args)
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith("error: ") and needle in line


def test_parse_memory_and_shard():
    assert parse_memory("4G") == 4 << 30
    assert parse_memory("512m") == 512 << 20
    assert parse_memory("1.5GiB") == int(1.5 * (1 << 30))
    assert parse_memory("1000") == 1000
    assert parse_shard("2/4") == (2, 4)
    with pytest.raises(UsageError):
        parse_shard("0/4")


def test_isolation_default():
    assert not ExecutionOptions().isolated(1)
    assert ExecutionOptions().isolated(2)
    assert ExecutionOptions(timeout=5).isolated(1)
    assert not ExecutionOptions(isolate=False).isolated(5)
    assert build_execution(jobs=None).jobs == 1


def test_shards_cover_every_target_once_whatever_the_order():
    paths = [f"m{i:02d}.pt" for i in range(11)]
    shards = [shard_slice(paths, (k, 3)) for k in (1, 2, 3)]
    assert sorted(p for shard in shards for p in shard) == sorted(paths)
    assert shard_slice(list(reversed(paths)), (2, 3)) == list(reversed(shards[1]))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_only_on_a_terminal():
    terminal, piped = _Terminal(), io.StringIO()
    for stream in (terminal, piped):
        with Progress(2, stream=stream) as progress:
            progress.begin("a.pt")
            progress.step("eval-mode")
            progress.finish("a.pt")
    assert "\r" in terminal.getvalue() and "0/2 done, 0:00 elapsed | a.pt: eval-mode 0:00" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r\x1b[K"), "the line is cleared at the end"
    [line] = piped.getvalue().splitlines()            # no terminal: one line per finished target
    assert "\r" not in piped.getvalue() and line.startswith("evalguard: [1/2] a.pt: done in 0.0s")
    quiet = _Terminal()
    with Progress(2, enabled=False, stream=quiet) as progress:
        progress.begin("a.pt")
    assert quiet.getvalue() == ""


def test_long_paths_are_cut_at_the_start(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    terminal = _Terminal()
    with Progress(3, stream=terminal) as progress:
        progress.begin("/very/long/registry/path/" * 4 + "model.pt")
        progress.step("architecture")
    last = terminal.getvalue().split("\r\x1b[K")[-2]
    assert last.endswith("model.pt: architecture 0:00") and "..." in last and len(last) <= 79


def test_in_process_audit_reports_steps_on_a_terminal(monkeypatch, tmp_path):
    (tmp_path / "train.py").write_text("import torch\n")
    monkeypatch.chdir(tmp_path)
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    options = AuditOptions(selected=frozenset(load_catalogue()))
    orchestrator.audit(["train.py"], options, execution=ExecutionOptions())
    assert "0/1 done" in terminal.getvalue() and "train.py: source 0:00" in terminal.getvalue()
    terminal.seek(0)
    terminal.truncate(0)
    orchestrator.audit(["train.py"], options, execution=ExecutionOptions(progress=False))
    assert terminal.getvalue() == ""


def test_cli_without_a_terminal_writes_no_progress(run_cli, tmp_path):
    source = tmp_path / "train.py"
    source.write_text("import torch\n")
    code, _, err = run_cli("check", source)
    assert code == 0 and "\r" not in err


def test_target_keeps_its_index():
    items = [Target(0, "b.pt", "b.pt"), Target(1, "a.py", "a.py")]
    assert [t.is_source for t in items] == [False, True]


def _out_of_memory(subject, options):
    raise MemoryError()


def test_running_out_of_memory_is_a_target_error_not_eg900(monkeypatch):
    from evalguard.checks import CheckSpec
    from evalguard.subject import AuditSubject

    monkeypatch.setattr(engine, "CHECKS", (CheckSpec("hungry", ("EG101",), frozenset({"factory"}),
                                                     f"{__name__}:_out_of_memory"),))
    options = AuditOptions(selected=frozenset(load_catalogue()))
    result, findings = engine.audit_subject(AuditSubject(path="m.pt", kind="factory"), options)
    assert findings == []
    assert result.status == "error" and "ran out of memory in check 'hungry'" in result.detail
    assert result.coverage["EG101"].status == "skipped"

    def load():
        raise MemoryError()

    result, findings = engine.audit_one(load, "big.pt", options)
    assert findings == [] and result.status == "error" and "out of memory while loading" in result.detail


def test_usage_error_inside_a_worker_stops_the_run_with_one_line(run_cli, models):
    code, out, err = run_cli("check", "good.pt", "alloc.pt", "--model", "factory.py", "--input-shape", "2x8",
                             "--no-onnx", "--jobs", "2")
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("error: --model expects MODULE:CALLABLE")
