import os
from pathlib import Path

import pytest

# Real models are built from configs; nothing may be downloaded.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def run_cli(capsys):
    """Run `evalguard ARGS` in-process; returns (exit_code, stdout, stderr)."""
    from evalguard.cli import main

    def run(*args):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
        else:  # pragma: no cover - main always exits
            code = 0
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def as_worker(monkeypatch):
    """Run the loaders in this test process as they run inside an isolated worker: a target whose
    loading needs a trial (TorchScript, .pt2, numpy/trusted pickles) is trial-loaded in a sandboxed
    child and then loaded here, instead of being sent to a worker (``NeedsWorker``). Only for
    tests of the loaders themselves; the CLI and engine tests take the real path."""
    from evalguard import sandbox

    monkeypatch.setattr(sandbox, "_ENTERED", sandbox.Limits(wall_seconds=None, cpu_seconds=None, memory_bytes=None))
