"""Finding fingerprints and the ``--baseline FILE`` of accepted findings.

A fingerprint must survive what does not change the problem: retraining (every number
moves), editing code above a finding (its line moves) and rewording a message (a new release).
So it hashes the rule, the normalised path, the module path and the finding's identifying
evidence (its text and yes/no values: the model variable, the call, the optimizer class, the
output name) -- never the message prose, the line, the column or measured numbers. Two identical
findings in one file (the same call on two lines) share a fingerprint; the baseline therefore
stores a count per fingerprint, and a run reports a finding as new only when there are more of
that kind than the baseline accepted. Version-1 baselines (fingerprints over the message) are
still read and matched the old way.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from evalguard.findings import Finding, Report

BASELINE_VERSION = 2
FINGERPRINT_KEY = "evalguard/v2"
#: Evidence keys holding prose or diagnostics rather than identity: never fingerprinted.
_PROSE_KEYS = frozenset({"note", "message", "assumption", "basis", "error", "errors", "explanation",
                         "confidence", "raised_at", "exception"})

# A number standing alone ("0.41", "1e-05", "3 of 12", "p=0.5", "50%"), not one inside an
# identifier ("Dropout2d", "layer.0.dropout", "fc1", shape "2x8").
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w])")


def normalise_path(path: str) -> str:
    text = path.replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text


def normalise_message(message: str) -> str:
    return " ".join(_NUMBER.sub("#", message).split())


def identity(finding: Finding) -> str:
    """The evidence that names *what* is wrong (strings and booleans), in a stable order."""
    items = sorted((key, value) for key, value in finding.evidence.items()
                   if key not in _PROSE_KEYS and isinstance(value, (str, bool)))
    return "\x1e".join(f"{key}={value}" for key, value in items)


def fingerprint(finding: Finding) -> str:
    """32 hex digits, the same for the same problem across retraining, code moves and rewording."""
    parts = (finding.rule, normalise_path(finding.location.path), finding.location.module or "", identity(finding))
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def fingerprint_v1(finding: Finding) -> str:
    """The version-1 fingerprint (over the message with numbers blanked), for old baselines."""
    parts = (finding.rule, normalise_path(finding.location.path), finding.location.module or "",
             normalise_message(finding.message))
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def baseline_dict(report: Report) -> dict:
    entries: dict[str, dict] = {}
    for finding in report.findings:
        key = fingerprint(finding)
        if key in entries:
            entries[key]["count"] += 1
            continue
        # The readable fields are only there so a reviewer can see what a diff accepts.
        entries[key] = {"count": 1, "rule": finding.rule,
                        "path": normalise_path(finding.location.path),
                        "module": finding.location.module,
                        "message": normalise_message(finding.message)}
    from evalguard._version import __version__

    return {"evalguard_baseline": BASELINE_VERSION, "tool_version": __version__,
            "fingerprints": dict(sorted(entries.items(), key=lambda kv: (
                kv[1]["path"], kv[1]["rule"], kv[1]["module"] or "", kv[0])))}


def write_baseline(report: Report, path: str | Path) -> int:
    """Write every finding of ``report`` as accepted; returns the number of findings."""
    text = json.dumps(baseline_dict(report), indent=2) + "\n"
    Path(path).write_text(text, encoding="utf-8")
    return len(report.findings)


@dataclass(frozen=True)
class Accepted:
    """A baseline as read: its format version (which fingerprint it holds) and fingerprint -> count."""

    version: int
    counts: dict[str, int]


def read_baseline(path: str | Path) -> Accepted:
    """The accepted findings of the baseline at ``path``, version 1 or 2 (what ``--baseline``
    reads). Raises ValueError with a one-line reason on a bad file."""
    version, counts = _read(path)
    return Accepted(version, counts)


def _read(path: str | Path) -> tuple[int, dict[str, int]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read baseline {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"baseline {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("evalguard_baseline") not in (1, BASELINE_VERSION) \
            or not isinstance(data.get("fingerprints"), dict):
        raise ValueError(f"{path} is not an evalguard baseline (version {BASELINE_VERSION})")
    counts = {}
    for key, entry in data["fingerprints"].items():
        count = entry.get("count", 1) if isinstance(entry, dict) else 1
        counts[str(key)] = int(count)
    return data["evalguard_baseline"], counts


@dataclass(frozen=True)
class BaselineResult:
    report: Report          # only the new findings
    suppressed: int         # findings the baseline accepted
    fixed: int              # accepted findings that no longer occur (baseline can shrink)


def apply_baseline(report: Report, accepted: Accepted, path: str = "") -> BaselineResult:
    """Hide the findings ``accepted`` holds, matched by the fingerprint of the baseline's version."""
    remaining = dict(accepted.counts)
    key_of = fingerprint if accepted.version == BASELINE_VERSION else fingerprint_v1
    new = []
    for finding in report.findings:
        key = key_of(finding)
        if remaining.get(key, 0) > 0:
            remaining[key] -= 1
        else:
            new.append(finding)
    suppressed = len(report.findings) - len(new)
    fixed = sum(remaining.values())
    metadata = dict(report.metadata)
    metadata["baseline"] = {"path": str(path), "suppressed": suppressed, "fixed": fixed}
    return BaselineResult(replace(report, findings=tuple(new), metadata=metadata), suppressed, fixed)


def filter_new(report: Report, path: str | Path) -> Report:
    """``report`` without the findings the baseline at ``path`` accepted.

    The result's ``metadata["baseline"]`` says how many were hidden and how many accepted
    findings are gone (``fixed``), so renderers can show both.
    """
    return apply_baseline(report, read_baseline(path), str(path)).report
