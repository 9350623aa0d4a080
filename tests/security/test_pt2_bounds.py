"""Issue 25 item 8: symbolic-expression towers and deeply nested headers are refused at once, statically.

Every exponent of ``((s0+s1+1)**64)**64`` passes the per-exponent check, but the compounded degree
(4096) costs sympy minutes once torch's shape environment expands or simplifies it; a Max/Min tower
hundreds deep does the same. A safetensors header nested thousands deep blew Python's recursion limit
(EG900). All are refusals now, decided before any parser or sympy sees them.
"""
from __future__ import annotations

import struct
import subprocess
import sys

import payloads as P
import pytest

from evalguard.errors import RefusedTarget
from evalguard.loading import load_target
from evalguard.subject import AuditOptions

TOWERS = ["((s0+s1+1)**64)**64", "PowByNatural(PowByNatural(s0 + 1, 64), 64)", "(((s0**4)**4)**4)**4",
          "Max(" * 40 + "s0" + ", 2)" * 40]


def refused(path) -> RefusedTarget:
    with pytest.raises(RefusedTarget) as info:
        load_target(str(path), AuditOptions())
    return info.value


def test_control_sympy_spends_seconds_on_a_tower():
    code = "import sympy; sympy.sympify('((s0+s1+1)**64)**64').expand()"   # minutes
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=8)


@pytest.mark.parametrize("expr", TOWERS)
def test_pt2_expression_towers_are_refused_before_sympy(tmp_path, expr):
    path = P.pt2_with(tmp_path, "tower.pt2", lambda n, d: [
        (n, P.edit_program(d, P.first_expr(expr)) if "models/" in n else d)])
    exc = refused(path)
    assert {f.rule for f in exc.findings} <= {"EG901", "EG905"} and exc.findings


@pytest.mark.parametrize("expr", ["s0 + 2*s1", "(s0**8)**8", "Max(2, s0)", "Eq(Mod(s0, 2), 0)"])
def test_ordinary_expressions_stay_within_the_bounds(expr):
    from evalguard.loading.export_scan import _is_safe_expression

    assert _is_safe_expression(expr, guard=False)


@pytest.mark.parametrize("header", [b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                                    b'{"__metadata__":' + b"[" * 200_000 + b"]" * 200_000 + b"}"])
def test_deeply_nested_safetensors_header_is_a_refusal_not_eg900(tmp_path, header):
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    exc = refused(path)
    assert [f.rule for f in exc.findings] == ["EG905"]
    assert "nested too deeply" in str(exc)


def test_control_deep_header_overflows_a_plain_json_parse(tmp_path):
    code = "import json; json.loads('[' * 200000 + ']' * 200000)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "RecursionError" in done.stderr
