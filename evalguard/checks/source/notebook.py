"""Jupyter notebooks for the source rules: the code cells, in order, as one Python text.

Location contract (documented in README): a finding in ``nb.ipynb`` keeps ``path`` = the notebook,
and ``line``/``column`` count in this *joined text*, where each code cell starts with one marker line
``# %% [cell N]`` (N counts every cell of the notebook, markdown too, from 1). ``cell_location``
turns a joined line into (cell, line in the cell); checks put both into the evidence (``cell``,
``cell_line``) and the message starts with ``(cell 3:line 4)``. ``write_back`` puts a ``--fix``
edit of the joined text back into the cells, leaving every other byte of the file as it was. IPython magics (``%...``, ``%%...``
cells), shell lines (``!...``) and help lines (``x?``) become blank lines, so lines never shift; a
cell that still is not valid Python is blanked too (a notebook may keep a broken cell).
"""
from __future__ import annotations

import ast
import difflib
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


def _dumps_like(raw: str):
    """A serializer that writes this notebook back byte for byte (Jupyter's own settings are tried), or None."""
    data = json.loads(raw)
    for sort_keys in (True, False):
        for indent in (1, 2, 4, None):
            for ascii_only in (False, True):
                def dumps(obj, s=sort_keys, i=indent, a=ascii_only):
                    return json.dumps(obj, sort_keys=s, indent=i, ensure_ascii=a) + ("\n" if raw.endswith("\n") else "")
                if dumps(data) == raw:
                    return dumps
    return None


def write_back(raw: str, before: str, after: str) -> str | None:
    """The notebook with the edits made to its joined text (``before`` -> ``after``) put into its code
    cells; every other byte stays as it was. None when that cannot be promised (a notebook whose
    JSON is not laid out as Jupyter writes it, or an edit across cells)."""
    dumps = _dumps_like(raw)
    old_cells, new_cells = _split(before), _split(after)
    if dumps is None or old_cells.keys() != new_cells.keys():
        return None
    data = json.loads(raw)
    for number, new_lines in new_cells.items():
        old_lines = old_cells[number]
        if new_lines == old_lines:
            continue
        cell = data["cells"][number - 1]
        original = _cell_lines(cell.get("source"))
        merged: list[str] = []
        matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            merged += original[i1:i2] if tag == "equal" else new_lines[j1:j2]
        source = cell.get("source")
        text = "\n".join(merged)
        if ("".join(source) if isinstance(source, list) else str(source or "")).endswith("\n"):
            text += "\n"                                  # the cell keeps its own trailing newline
        cell["source"] = text.splitlines(keepends=True) if isinstance(source, list) else text
    return dumps(data)


def _split(text: str) -> dict[int, list[str]]:
    cells: dict[int, list[str]] = {}
    current = None
    for line in text.splitlines():
        found = MARKER.match(line)
        if found:
            current = int(found.group(1))
            cells[current] = []
        elif current is not None:
            cells[current].append(line)
    return cells
