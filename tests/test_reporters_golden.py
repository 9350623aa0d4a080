"""Golden files for every renderer: the exact output for fixed sample reports.

A change to a renderer shows up here as a diff. When the change is intended, refresh with
    EVALGUARD_UPDATE_GOLDEN=1 /work/venv/bin/python -m pytest tests/test_reporters_golden.py
and review ``git diff tests/golden`` before committing. The tool version and the rule
catalogue are frozen for these tests, so editing a rule's text does not churn the files.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
from test_reporters_samples import ALL_SAMPLES, golden_catalogue

from evalguard import catalogue
from evalguard.reporters import render
from evalguard.reporters.github import annotations

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("EVALGUARD_UPDATE_GOLDEN") == "1"

CASES = [
    ("blocked", "text", "blocked.txt"),
    ("blocked", "json", "blocked.json"),
    ("blocked", "sarif", "blocked.sarif"),
    ("blocked", "junit", "blocked.junit.xml"),
    ("blocked", "html", "blocked.html"),
    ("blocked", "github", "blocked.github.txt"),
    ("safe", "html", "safe.html"),
    ("big_model", "html", "big_model.html"),
    ("error_target", "junit", "error_target.junit.xml"),
    ("error_target", "sarif", "error_target.sarif"),
    ("refused", "junit", "refused.junit.xml"),
]


@pytest.fixture
def frozen(monkeypatch):
    """Pin what would otherwise change between releases: tool version and rule texts."""
    import evalguard._version

    monkeypatch.setattr(evalguard, "__version__", "0.0.0+golden")
    monkeypatch.setattr(evalguard._version, "__version__", "0.0.0+golden")   # what the reporters read
    monkeypatch.setattr(catalogue, "load_catalogue", golden_catalogue)


def _render(sample: str, fmt: str) -> str:
    report = ALL_SAMPLES[sample]()
    return annotations(report) if fmt == "github" else render(report, fmt)


@pytest.mark.parametrize(("sample", "fmt", "filename"), CASES, ids=[c[2] for c in CASES])
def test_matches_golden(frozen, sample, fmt, filename):
    actual = _render(sample, fmt)
    path = GOLDEN / filename
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"missing golden file {path}: run with EVALGUARD_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(list(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                                 f"golden/{filename}", "rendered"))[:80])
        pytest.fail(f"{filename} differs from the golden file (refresh on purpose with "
                    f"EVALGUARD_UPDATE_GOLDEN=1):\n{diff}")


def test_rendering_is_deterministic(frozen):
    for sample, fmt, _ in CASES:
        assert _render(sample, fmt) == _render(sample, fmt)


def test_every_golden_file_belongs_to_a_case():
    """A renamed case must not leave a stale golden file behind."""
    if not GOLDEN.exists():
        pytest.skip("no golden folder yet")
    assert {p.name for p in GOLDEN.iterdir()} <= {c[2] for c in CASES}
