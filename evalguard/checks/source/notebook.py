"""Jupyter notebooks for the source rules: the code cells, in order, as one Python text.

Location contract (documented in README): a finding in ``nb.ipynb`` keeps ``path`` = the notebook,
and ``line``/``column`` count in this *joined text*, where each code cell starts with one marker line
``# %% [cell N]`` (N counts every cell of the notebook, markdown too, from 1). ``cell_location``
turns a joined line into (cell, line in the cell); checks put both into the evidence (``cell``,
``cell_line``) and the text reads ``nb.ipynb:cell 3:line 4``. IPython magics (``%...``, ``%%...``
cells), shell lines (``!...``) and help lines (``x?``) become blank lines, so lines never shift; a
cell that still is not valid Python is blanked too (a notebook may keep a broken cell).
"""
from __future__ import annotations

import ast
import json
import re

from evalguard.errors import TargetError

MARKER = re.compile(r"^# %% \[cell (\d+)\]$")


def _cell_lines(source) -> list[str]:
    text = "".join(source) if isinstance(source, list) else str(source or "")
    return text.splitlines()


def _is_ipython(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(("%", "!")) or (stripped.endswith("?") and not stripped.startswith("#")) or \
        bool(re.match(r"^[A-Za-z_][\w.]*\s*=\s*[!%]", stripped))


def code_of(raw: str, path: str) -> str:
    """The joined Python text of a notebook's code cells."""
    try:
        cells = json.loads(raw).get("cells")
    except (ValueError, AttributeError):
        cells = None
    if not isinstance(cells, list):
        raise TargetError(f"{path}: not a Jupyter notebook (no cells in its JSON)")
    out: list[str] = []
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        lines = _cell_lines(cell.get("source"))
        if lines and lines[0].lstrip().startswith("%%"):
            lines = [""] * len(lines)                    # a cell magic: %%bash, %%time, ...
        lines = ["" if _is_ipython(line) else line for line in lines]
        try:
            ast.parse("\n".join(lines))
        except (SyntaxError, ValueError):
            lines = [""] * len(lines)
        out.append(f"# %% [cell {number}]")
        out += lines
    return "\n".join(out) + "\n"


def cell_location(text: str, line: int) -> tuple[int, int] | None:
    """(cell, line in that cell) for a line of the joined text; None above the first cell."""
    lines = text.splitlines()
    for index in range(min(line, len(lines)) - 1, -1, -1):
        found = MARKER.match(lines[index])
        if found:
            return int(found.group(1)), line - index - 1
    return None
