"""``evalguard check --fix`` / ``--diff``: rewrite source findings with libcst, ruff-style.

A fixer takes a finding (rule, path, line, column; its evidence is read defensively) and
rewrites the call it points at, keeping comments and formatting. Safe fixes are applied by
``--fix``; unsafe ones (they may change what the program does beyond the finding) also need
``--unsafe-fixes``. One module per rule:

- EG301 ``eg301``: ``Adam(..., weight_decay=w)`` -> ``AdamW(...)`` in the file's import style;
  NAdam/RAdam get ``decoupled_weight_decay=True``.
- EG903 ``eg903``: ``weights_only=False`` -> ``True`` when the result only feeds
  ``load_state_dict`` (safe); anywhere else it may hold custom classes (unsafe).
- EG105 ``eg105``: functional dropout gets ``training=self.training``; attention's
  ``dropout_p=p`` becomes ``p if self.training else 0.0``.
- EG106 ``eg106``: ``model.eval()`` inserted before the inference block (unsafe: it changes
  the mode of a model that may be shared).

Nothing here imports torch; libcst is imported only when a fix runs.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalguard.errors import UsageError

#: rule -> module under evalguard.fixes with ``fix(call, site, ctx) -> Edit | None``
FIXERS = {"EG105": "eg105", "EG106": "eg106", "EG301": "eg301", "EG903": "eg903"}


@dataclass(frozen=True)
class Site:
    """Where a finding points: 1-based line and column of the call, as the source rules report."""

    rule: str
    line: int
    column: int
    evidence: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class FileFix:
    path: str
    before: str
    after: str
    applied: list[Site] = field(default_factory=list)
    unsafe_skipped: list[Site] = field(default_factory=list)   # would need --unsafe-fixes
    unfixable: list[Site] = field(default_factory=list)        # no fix for this spelling

    @property
    def changed(self) -> bool:
        return self.after != self.before

    def diff(self) -> str:
        return "".join(difflib.unified_diff(self.before.splitlines(keepends=True),
                                            self.after.splitlines(keepends=True),
                                            fromfile=f"a/{self.path.lstrip('/')}",
                                            tofile=f"b/{self.path.lstrip('/')}"))


def sites_by_file(findings: Iterable) -> dict[str, list[Site]]:
    """Fixable source findings grouped by file, in the order they were reported."""
    grouped: dict[str, list[Site]] = {}
    for finding in findings:
        loc = finding.location
        if finding.rule in FIXERS and loc.line is not None and loc.column is not None \
                and loc.path.endswith((".py", ".ipynb")):
            evidence = finding.evidence if isinstance(finding.evidence, Mapping) else {}
            grouped.setdefault(loc.path, []).append(Site(finding.rule, loc.line, loc.column, evidence))
    return grouped


def fix_text(text: str, sites: list[Site], unsafe: bool = False, path: str = "<source>") -> FileFix:
    from evalguard.fixes.apply import apply_fixes

    return apply_fixes(text, sites, unsafe, path)


def fix_findings(findings: Iterable, unsafe: bool = False) -> list[FileFix]:
    """One FileFix per file with fixable findings (nothing is written here)."""
    try:
        import libcst  # noqa: F401
    except ImportError:
        raise UsageError("--fix and --diff need libcst: pip install 'evalguard[fix]'") from None
    fixes = []
    for path, sites in sites_by_file(findings).items():
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--fix: cannot read {path}: {exc.strerror}") from None
        fixes.append(_fix_notebook(text, sites, unsafe, path) if path.endswith(".ipynb")
                     else fix_text(text, sites, unsafe, path))
    return fixes


def _fix_notebook(raw: str, sites: list[Site], unsafe: bool, path: str) -> FileFix:
    """A notebook is fixed in its joined code cells and written back unchanged outside the edits;
    when that cannot be promised its sites are left unfixed."""
    from evalguard.checks.source.notebook import code_of, write_back

    joined = code_of(raw, path)
    fixed = fix_text(joined, sites, unsafe, path)
    after = write_back(raw, joined, fixed.after) if fixed.changed else raw
    if after is None:
        return FileFix(path, raw, raw, unfixable=[*fixed.applied, *fixed.unfixable],
                       unsafe_skipped=fixed.unsafe_skipped)
    return FileFix(path, raw, after, fixed.applied, fixed.unsafe_skipped, fixed.unfixable)
