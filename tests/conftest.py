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
