"""Which torch versions a project allows, from its declared requirements (read as text, never run).

Walking up from the checked file, the first folder that declares a torch requirement decides:
``pyproject.toml`` (PEP 621 ``dependencies``, Poetry ``torch = "..."``), ``setup.cfg``
(``install_requires``), ``setup.py`` (string literals) and ``requirements*.txt``. Under
``site-packages`` the installed distribution's ``*.dist-info/METADATA`` (``Requires-Dist: torch``)
is read instead, and torch's own files run with the installed torch. The lowest version allowed
is taken from ``>=``, ``>``, ``==``, ``~=`` (``<``, ``<=`` and ``!=`` do not raise it); a requirement
without such a bound, or no requirement at all, allows any torch.
"""
from __future__ import annotations

import functools
import glob
import os
import re

#: A torch requirement in any of the files: the name (not torchvision, torch-xla, ...) and its specifiers.
TORCH_SPEC = re.compile(r"""(?<![\w.-])torch(?![\w-])\s*(?:\[[^\]]*\])?\s*(?:=\s*)?["']?\s*((?:[<>=!~^]=?\s*[\w.*+]+\s*,?\s*)*)""")
SPECIFIER = re.compile(r"(>=|>|==|~=|\^|<=|<|!=)\s*([\d]+(?:\.[\d*]+)*)")
FILES = ("pyproject.toml", "setup.cfg", "setup.py")
MAX_UP = 12


def torch_floor(path: str | None) -> tuple[tuple[int, ...] | None, str]:
    """(lowest torch version the project allows or None for any, where that was read)."""
    if not path:
        return None, "no requirement declared"
    return _floor_in(os.path.dirname(os.path.abspath(path)), 0)


@functools.lru_cache(maxsize=4096)
def _floor_in(folder: str, depth: int) -> tuple[tuple[int, ...] | None, str]:
    if os.path.basename(folder) in ("site-packages", "dist-packages"):
        return None, "no requirement declared"
    parent = os.path.dirname(folder)
    if os.path.basename(parent) in ("site-packages", "dist-packages"):
        return _installed(parent, os.path.basename(folder))
    candidates = [os.path.join(folder, f) for f in FILES] + sorted(glob.glob(os.path.join(folder, "requirements*.txt")))
    for candidate in candidates:
        found = _declared(candidate)
        if found is not None:
            return found, os.path.basename(candidate)
        if _mentions_torch(candidate):
            return None, os.path.basename(candidate)
    if parent == folder or depth >= MAX_UP:
        return None, "no requirement declared"
    return _floor_in(parent, depth + 1)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(200_000)
    except OSError:
        return ""


def _mentions_torch(path: str) -> bool:
    return TORCH_SPEC.search(_strip_comments(_read(path))) is not None


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def _declared(path: str) -> tuple[int, ...] | None:
    """The highest lower bound over the file's torch requirements, or None."""
    floors = []
    for match in TORCH_SPEC.finditer(_strip_comments(_read(path))):
        floors += [floor for floor in map(_lower_bound, [match.group(1)]) if floor is not None]
    return max(floors) if floors else None


def _lower_bound(specifiers: str) -> tuple[int, ...] | None:
    floors = []
    for operator, version in SPECIFIER.findall(specifiers):
        if operator in (">=", ">", "==", "~=", "^"):
            floors.append(tuple(int(p) for p in version.split(".") if p.isdigit()))
    return max(floors) if floors else None


def _installed(site: str, package: str) -> tuple[tuple[int, ...] | None, str]:
    if package == "torch":              # torch's own code runs with this very torch
        for info in glob.glob(os.path.join(site, "torch-*.dist-info")):
            version = re.match(r"torch-([\d.]+)", os.path.basename(info))
            if version:
                return tuple(int(p) for p in version.group(1).strip(".").split(".")), os.path.basename(info)
    for info in glob.glob(os.path.join(site, "*.dist-info")):
        top = _read(os.path.join(info, "top_level.txt")).split()
        name = os.path.basename(info).split("-")[0].lower().replace("_", "-")
        if package in top or name == package.lower().replace("_", "-"):
            floors = [_lower_bound(m) for m in re.findall(r"^Requires-Dist: torch(?![\w-])\s*\(?([^;\n]*)",
                                                           _read(os.path.join(info, "METADATA")), re.MULTILINE)]
            floors = [f for f in floors if f is not None]
            return (max(floors) if floors else None), os.path.basename(info)
    return None, "no requirement declared"
