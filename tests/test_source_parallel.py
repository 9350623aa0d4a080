"""The ``.py`` targets of a run checked in forked worker processes (``evalguard.execution.sources``):
the report is the serial run's, byte for byte; small trees stay serial unless ``--jobs`` says.
(That no process imports torch is tested in test_source.py.)
"""
import json
import os

import pytest
from test_source_eval import CROSS_FILE_PROJECT, write

from evalguard import orchestrator
from evalguard.execution import ExecutionOptions, Target, build_execution, sources
from evalguard.subject import AuditOptions

#: Cross-file resolution (test_source_eval's project), a file that does
#: not parse, a suppressed finding, and enough plain files for several chunks per worker.
PROJECT = {
    **CROSS_FILE_PROJECT,
    "broken.py": "def f(:\n",
    "quiet.py": "import torch\nm = torch.load('m.pt', weights_only=False)  # evalguard: ignore[EG903]\n",
    **{f"more/serve_{i:02d}.py": f"""\
        import torch
        import torch.nn.functional as F
        from torch import nn
        opt = torch.optim.Adam([], weight_decay=0.{i + 1})
        class Net{i}(nn.Module):
            def forward(self, x):
                return F.dropout(x, 0.{i + 1})
        m = torch.load('m{i}.pt', weights_only=False)
        """ for i in range(34)},
}


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    write(root, PROJECT)
    return root


_pids_file = None


def _recording_chunk(targets):
    """Stands in for ``sources._audit_chunk`` (forked workers inherit the patch): logs the worker."""
    with open(_pids_file, "a") as log:
        log.write(f"{os.getpid()}\n")
    return _real_chunk(targets)


_real_chunk = sources._audit_chunk


def _dying_chunk(targets):
    """A worker that dies on the chunk holding sub.py (never expected; the run must survive it)."""
    if any(t.display.endswith("sub.py") for t in targets):
        os._exit(3)
    return _real_chunk(targets)


@pytest.fixture
def workers_log(tmp_path, monkeypatch):
    global _pids_file
    _pids_file = str(tmp_path / "pids")
    monkeypatch.setattr(sources, "_audit_chunk", _recording_chunk)

    def pids() -> set[str]:
        return set(open(_pids_file).read().split()) if os.path.exists(_pids_file) else set()

    return pids


def _report(run_cli, tree, *args):
    code, out, err = run_cli("check", tree, "--format", "json", *args)
    data = json.loads(out)
    data["run"].pop("command")       # the command line itself differs (--jobs)
    return code, json.dumps(data, indent=2), data


def test_one_and_two_workers_give_the_same_report(run_cli, tree, workers_log):
    code_one, one, data = _report(run_cli, tree, "--jobs", "1")
    assert workers_log() == set(), "--jobs 1 checks the files in this process"
    code_two, two, _ = _report(run_cli, tree, "--jobs", "2")
    assert len(workers_log()) == 2 and str(os.getpid()) not in workers_log()
    assert code_one == code_two == 2           # broken.py is an error target
    assert two == one
    # what the report holds was resolved across files, inside the workers too
    eg106 = sorted((os.path.relpath(f["location"]["path"], tree), f["location"]["line"])
                   for f in data["findings"] if f["rule"] == "EG106")
    assert eg106 == [("run.py", 7), ("run.py", 8), ("sub.py", 6)]
    status = {os.path.relpath(t["path"], tree): t["status"] for t in data["targets"]}
    assert status["broken.py"] == "error" and len(status) == len(PROJECT)
    counted = {rule: sum(f["rule"] == rule for f in data["findings"]) for rule in ("EG105", "EG301", "EG903")}
    assert counted == {"EG105": 34, "EG301": 34, "EG903": 34}, "quiet.py's EG903 is suppressed"


def test_default_uses_the_cores_for_a_big_tree(run_cli, tree, workers_log, monkeypatch):
    monkeypatch.setattr(sources, "cpu_count", lambda: 2)
    assert len(PROJECT) >= sources.MIN_FILES
    _, serial, _ = _report(run_cli, tree, "--jobs", "1")
    _, default, _ = _report(run_cli, tree)
    assert len(workers_log()) == 2 and default == serial


def test_a_dead_worker_leaves_its_files_to_the_main_process(run_cli, tree, monkeypatch):
    _, serial, _ = _report(run_cli, tree, "--jobs", "1")
    monkeypatch.setattr(sources, "_audit_chunk", _dying_chunk)
    _, survived, _ = _report(run_cli, tree, "--jobs", "2")
    assert survived == serial


def test_worker_count(monkeypatch):
    monkeypatch.setattr(sources, "cpu_count", lambda: 4)
    auto = ExecutionOptions()
    assert sources.source_workers(auto, sources.MIN_FILES - 1) == 1      # small tree: serial
    assert sources.source_workers(auto, sources.MIN_FILES) == 4
    assert sources.source_workers(ExecutionOptions(source_jobs=3), 10) == 3     # --jobs is honoured
    assert sources.source_workers(ExecutionOptions(source_jobs=3), 2) == 2
    assert sources.source_workers(ExecutionOptions(source_jobs=3), 1) == 1
    assert sources.source_workers(ExecutionOptions(source_jobs=1), 1000) == 1
    assert build_execution(jobs=None).source_jobs is None
    assert build_execution(jobs=2).source_jobs == 2


def test_chunks_are_contiguous_and_cover_every_target():
    targets = [Target(i, f"f{i}.py", f"f{i}.py") for i in range(160)]
    parts = sources.chunks(targets, 2)
    assert [t for part in parts for t in part] == targets
    assert len(parts) == 2 * sources.CHUNKS_PER_WORKER and min(map(len, parts)) >= 4


def test_python_callers_stay_in_process(tree, workers_log):
    report = orchestrator.audit([str(tree)], AuditOptions(selected=frozenset({"EG903"})))
    assert len(report.targets) == len(PROJECT) and workers_log() == set()
