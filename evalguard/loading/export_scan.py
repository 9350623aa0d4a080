"""Static checks of a ``torch.export`` (.pt2) archive before ``torch.export.load`` touches it.

``torch.export.load`` is not a data-only loader: it unpickles some weights and constants with
``weights_only=False``, evaluates shape expressions with ``sympy.sympify`` (which calls
``eval``), ``exec``s the saved guard code when ``.module()`` is built, resolves node targets
by ``getattr`` on ``torch``/``operator``, pastes node names into generated Python, and loads
AOTInductor shared libraries. So before loading we require that:

* every pickle inside (also inside nested torch.save archives) passes the global allow-list;
* there is no AOTInductor code;
* every ``expr_str`` and guard is a small arithmetic expression over shape symbols;
* every node target is a registered operator (``torch.ops.ns.op.overload``) or a symbolic
  arithmetic function, and every graph name is a plain identifier.
"""
from __future__ import annotations

import ast
import json
import re
import zipfile

from evalguard.loading.pickle_scan import GlobalRef, PickleScanError, scan_torch_payload

#: Functions the deserializer passes to ``sympify`` (torch.utils._sympy.functions) plus sympy's own.
_SYMPY_NAMES = frozenset("""
FloorDiv ModularIndexing Where PythonMod Mod CleanDiv CeilToInt FloorToInt CeilDiv LShift RShift
PowByNatural FloatPow FloatTrueDiv IntTrueDiv IsNonOverlappingAndDenseIndicator TruncToFloat
TruncToInt RoundToInt RoundDecimal ToFloat Identity Symbol Integer Rational Float Add Mul Pow Max Min
Eq Ne Lt Le Gt Ge StrictLessThan StrictGreaterThan LessThan GreaterThan And Or Not Abs floor ceiling
sqrt oo zoo nan true false True False
""".split())
#: What a guard may call on an input: ``L['x'].size()[0] >= 2`` and the like.
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel", "shape"})
_SYMBOL = re.compile(r"^[a-z]+\d+$")
_OP_TARGET = re.compile(r"^torch\.ops\.[A-Za-z_]\w*\.[A-Za-z_]\w*(\.[A-Za-z_]\w*)?$")
_SAFE_NAME = re.compile(r"^([A-Za-z_][\w.]*)?$")
#: Non-operator targets the deserializer accepts for symbolic-shape arithmetic (serialised names).
_SYM_TARGETS = frozenset(
    [f"_operator.{n}" for n in ("eq ne le ge lt gt neg pos mul add sub floordiv mod pow truediv "
                                "and_ or_ not_ getitem").split()]
    + ["math.trunc", "math.ceil", "math.floor", "torch.sym_not", "torch.sym_int", "torch.sym_float",
       "torch.sym_ite", "torch.sym_max", "torch.sym_min", "torch.sym_sqrt", "torch._sym_sqrt",
       "torch.sym_sum", "torch.sym_fresh_size"]
)
_NAME_KEYS = frozenset({"name", "as_name"})
_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift,
           ast.BitAnd, ast.BitOr)


def scan_pt2(archive: zipfile.ZipFile, prefix: str) -> tuple[list[GlobalRef], list[str]]:
    """Globals of every pickle inside, and descriptions of unsafe constructs found."""
    problems: list[str] = []
    refs: list[GlobalRef] = []
    raw_payloads = _raw_payloads(archive, prefix)
    for member in archive.namelist():
        inner = member[len(prefix):]
        if member.endswith("/") or member in raw_payloads:
            continue
        if inner.startswith("data/aotinductor/"):
            problems.append(f"{member}: AOTInductor compiled code (a shared library that would be loaded)")
            continue
        if inner.startswith("models/") and inner.endswith(".json"):
            problems += [f"{member}: {p}" for p in check_program_json(archive.read(member))]
            continue
        if not inner.startswith("data/") or inner.endswith(".json"):
            continue  # version markers, byteorder, extra files: read as text, never unpickled
        try:
            refs += scan_torch_payload(archive.read(member), member)
        except (PickleScanError, zipfile.BadZipFile) as exc:
            problems.append(f"{member}: embedded object that cannot be checked ({exc})")
    return refs, problems


def _raw_payloads(archive: zipfile.ZipFile, prefix: str) -> set[str]:
    """Members the configs declare as raw tensor bytes (``use_pickle: false``)."""
    raw: set[str] = set()
    for folder in ("data/weights/", "data/constants/"):
        for member in archive.namelist():
            if not (member.startswith(prefix + folder) and member.endswith("_config.json")):
                continue
            try:
                config = json.loads(archive.read(member)).get("config", {})
            except (ValueError, AttributeError):
                continue
            for payload in config.values() if isinstance(config, dict) else ():
                if isinstance(payload, dict) and payload.get("use_pickle") is False and payload.get("path_name"):
                    raw.add(prefix + folder + str(payload["path_name"]))
    return raw


def check_program_json(data: bytes) -> list[str]:
    try:
        program = json.loads(data)
    except ValueError as exc:
        return [f"not valid JSON ({exc})"]
    problems: list[str] = []
    for guard in program.get("guards_code", []) if isinstance(program, dict) else []:
        if not _is_safe_expression(guard, guard=True):
            problems.append(f"guard code that would be executed: {str(guard)[:120]!r}")
    for key, value in _walk(program):
        if key == "expr_str" and not _is_safe_expression(value, guard=False):
            problems.append(f"shape expression that sympy would evaluate: {str(value)[:120]!r}")
        elif key == "target" and isinstance(value, str) and not _is_safe_target(value):
            problems.append(f"node target outside registered operators: {value[:120]!r}")
        elif key in _NAME_KEYS and isinstance(value, str) and not _SAFE_NAME.match(value):
            problems.append(f"graph name that is not an identifier: {value[:120]!r}")
    return problems


def _walk(obj, key=None):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k, v
            yield from _walk(v, k)
    elif isinstance(obj, list):
        for item in obj:
            yield from _walk(item, key)


def _is_safe_target(target: str) -> bool:
    return (bool(_OP_TARGET.match(target)) and "__" not in target) or target in _SYM_TARGETS


def _is_safe_expression(text, *, guard: bool) -> bool:
    """A whitelist over the Python AST: arithmetic, comparisons, known functions, symbols."""
    if not isinstance(text, str) or len(text) > 10_000:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return False
    return all(_safe_node(node, guard) for node in ast.walk(tree))


def _safe_node(node: ast.AST, guard: bool) -> bool:
    if isinstance(node, (ast.Expression, ast.Load, ast.BoolOp, ast.And, ast.Or, ast.Not, ast.UnaryOp,
                         ast.USub, ast.UAdd, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt,
                         ast.GtE, ast.BinOp, *_BINOPS, ast.keyword)):
        return not isinstance(node, ast.keyword) or (node.arg is not None and not node.arg.startswith("_"))
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float, bool, str)) and not (
            isinstance(node.value, str) and not _SAFE_NAME.match(node.value))
    if isinstance(node, ast.Name):
        return node.id in _SYMPY_NAMES or bool(_SYMBOL.match(node.id)) or (guard and node.id == "L")
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name):
            return func.id in _SYMPY_NAMES
        return guard and isinstance(func, ast.Attribute) and func.attr in _GUARD_METHODS
    if guard and isinstance(node, ast.Subscript):
        return True  # the container and the index are walked (and checked) on their own
    if guard and isinstance(node, ast.Attribute):
        return node.attr in _GUARD_METHODS
    return False
