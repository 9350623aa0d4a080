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

from evalguard.loading.pickle_scan import GlobalRef, PickleScanError, scan_torch_payload
from evalguard.loading.program_scan import is_pure_op

#: Functions the deserializer passes to ``sympify`` (torch.utils._sympy.functions) plus sympy's own.
_SYMPY_NAMES = frozenset(["FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan", "And", "Or", "Not", "Abs", "floor", "ceiling", "sqrt", "oo", "zoo", "nan", "true", "false", "True", "False"])
#: What a guard may call on an input: ``L['x'].size()[0] >= 2`` and the like.
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel", "shape"})
_SYMBOL = re.compile(r"^[a-z]+\d+$")
_OP_TARGET = re.compile(r"^torch\.ops\.[A-Za-z_]\w*\.[A-Za-z_]\w*(\.[A-Za-z_]\w*)?$")
_SAFE_NAME = re.compile(r"^([A-Za-z_][\w.]*)?$")
#: Non-operator targets the deserializer accepts for symbolic-shape arithmetic (serialised names).
_SYM_TARGETS = frozenset(
    [f"_operator.{n}" for n in ["eq", "ne", "le", "ge", "lt", "gt", "neg", "pos", "mul", "add", "sub", "floordiv", "mod", "pow", "truediv", "and_", "or_", "not_", "getitem"]]
    + ["math.trunc", "math.ceil", "math.floor", "torch.sym_not", "torch.sym_int", "torch.sym_float",
       "torch.sym_ite", "torch.sym_max", "torch.sym_min", "torch.sym_sqrt", "torch._sym_sqrt",
       "torch.sym_sum", "torch.sym_fresh_size"]
)
_NAME_KEYS = frozenset({"name", "as_name"})
_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift,
           ast.BitAnd, ast.BitOr)


_FIXED_MEMBERS = frozenset({"archive_format", "archive_version", "byteorder", ".data/version",
                            ".data/serialization_id"})
_PAYLOAD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
#: Expressions longer than this, or integers with more digits, are refused before sympy sees them.
MAX_EXPRESSION = 2000
MAX_DIGITS = 20
MAX_EXPONENT = 64
#: A static bound on what sympy may be asked to build from one expression (issue 25 item 8): a
#: tower whose every exponent passes MAX_EXPONENT (``((s0+1)**64)**64``, Max/Min nested hundreds
#: deep) costs sympy minutes. Real range constraints and guards are a few nodes deep.
MAX_DEPTH = 24
MAX_NODES = 400
MAX_DEGREE = 64     # product of the exponents along any path from the root


class Pt2Scan:
    """What the static read of a .pt2 archive found."""

    def __init__(self):
        self.refs: list[GlobalRef] = []
        self.problems: list[str] = []      # EG901 constructs that would run code
        self.unsafe_ops: list[str] = []    # EG904
        self.refusal: str = ""             # EG905: content outside the format


def scan_pt2(archive) -> Pt2Scan:
    """Read every member ``torch.export.load`` would read, the way it reads it (see its ``load_pt2``).

    Any member that load would not read for a declared model is refused (EG905): a scanner that
    skips "unused" members is exactly what decoy configs and alternative members exploit.
    """
    result = Pt2Scan()
    members = {name[len(archive.prefix):].lower(): name for name in archive.names()}
    claimed: set[str] = set()

    def read(inner: str) -> bytes | None:
        name = members.get(inner.lower())
        if name is None:
            return None
        claimed.add(inner.lower())
        return archive.read(name)

    def refuse(reason: str) -> Pt2Scan:
        result.refusal = reason
        return result

    if read("archive_format") != b"pt2" or read("archive_version") != b"0":
        return refuse("archive_format/archive_version members are not the ones torch.export.save writes")
    for inner in ("byteorder", ".data/version", ".data/serialization_id"):
        read(inner)
    models = [inner for inner in members if inner.startswith("models/")]
    if not models:
        return refuse("a .pt2 archive without models/")
    for inner in models:
        model = inner[len("models/"):]
        if not model.endswith(".json") or not _MODEL_NAME.match(model[:-len(".json")]):
            return refuse(f"program member {members[inner]!r} is not models/<name>.json")
        model = model[:-len(".json")]
        try:
            problems, ops = check_program_json(read(inner))
        except ProgramTooDeep as exc:
            return refuse(f"program member {members[inner]!r}: {exc}")
        result.problems += [f"{members[inner]}: {p}" for p in problems]
        result.unsafe_ops += [f"{op} (in {members[inner]})" for op in ops]
        reason = _scan_model_payloads(model, read, result)
        if reason:
            return refuse(reason)
    for inner, name in members.items():
        if inner.startswith("extra/"):
            claimed.add(inner)  # read as text by torch, never parsed
        elif inner.startswith("data/aotinductor/"):
            result.problems.append(f"{name}: AOTInductor compiled code (a shared library that would be loaded)")
            claimed.add(inner)
    unclaimed = sorted(members[i] for i in members if i not in claimed)
    if unclaimed:
        return refuse(f"member(s) torch.export.load would not read as vetted: {', '.join(unclaimed[:3])}"
                      + (f" and {len(unclaimed) - 3} more" if len(unclaimed) > 3 else ""))
    return result


def _scan_model_payloads(model: str, read, result: Pt2Scan) -> str:
    """Sample inputs, weights and constants of one model; returns a refusal reason or ""."""
    for inner in (f"data/sample_inputs/{model}.pt", f"data/weights/{model}.pt", f"data/constants/{model}.pt"):
        data = read(inner)
        if data is not None:
            _scan_payload(data, inner, result)
    for folder, config_name in (("data/weights/", f"data/weights/{model}_weights_config.json"),
                                ("data/constants/", f"data/constants/{model}_constants_config.json")):
        data = read(config_name)
        if data is None:
            continue
        try:
            config = json.loads(data).get("config", {})
        except (ValueError, AttributeError):
            return f"{config_name} is not a payload config"
        if not isinstance(config, dict):
            return f"{config_name} is not a payload config"
        for fqn, payload in config.items():
            path_name = payload.get("path_name") if isinstance(payload, dict) else None
            if not isinstance(path_name, str) or not _PAYLOAD_NAME.match(path_name):
                return f"{config_name}: payload {str(fqn)[:60]!r} has path {str(path_name)[:60]!r}, not a plain name"
            if path_name.startswith(("custom_obj_", "opaque_obj_")):
                return (f"{config_name}: {path_name} is a pickled custom/opaque object, which torch.export.load "
                        "unpickles without restrictions")
            member = read(folder + path_name)
            if member is None:
                return f"{config_name}: payload {path_name} is missing"
            if payload.get("use_pickle") is not False:
                _scan_payload(member, folder + path_name, result)
    return ""


def _scan_payload(data: bytes, member: str, result: Pt2Scan) -> None:
    try:
        result.refs += scan_torch_payload(data, member)
    except PickleScanError as exc:
        result.problems.append(f"{member}: embedded object that cannot be checked ({exc})")


#: Deepest nesting a program JSON may have; torch.export.save writes about 20 levels.
MAX_JSON_DEPTH = 256


class ProgramTooDeep(ValueError):
    """A program JSON nested deeper than ``MAX_JSON_DEPTH`` (refused, EG905)."""


def check_program_json(data: bytes) -> tuple[list[str], list[str]]:
    """(constructs that would run code, operations outside the pure-op allow-list).

    Raises ``ProgramTooDeep`` for JSON nested deeper than ``MAX_JSON_DEPTH``."""
    try:
        program = json.loads(data)
    except RecursionError:
        raise ProgramTooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        return [f"not valid JSON ({exc})"], []
    problems: list[str] = []
    ops: list[str] = []
    for guard in program.get("guards_code", []) if isinstance(program, dict) else []:
        if not _is_safe_expression(guard, guard=True):
            problems.append(f"guard code that would be executed: {str(guard)[:120]!r}")
    for key, value in _walk(program):
        if key == "expr_str" and not _is_safe_expression(value, guard=False):
            problems.append(f"shape expression that sympy would evaluate: {str(value)[:120]!r}")
        elif key == "target" and isinstance(value, str) and not _is_safe_target(value):
            ops.append(value[:120] + (" (custom op namespace)" if _is_custom_op(value) else ""))
        elif key in _NAME_KEYS and isinstance(value, str) and not _SAFE_NAME.match(value):
            problems.append(f"graph name that is not an identifier: {value[:120]!r}")
    return problems, list(dict.fromkeys(ops))


def _walk(obj):
    """Every (key, value) pair of a JSON document, list items under their list's key; iterative,
    with the depth bounded by ``MAX_JSON_DEPTH``."""
    stack = [(obj, None, 0)]
    while stack:
        node, key, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ProgramTooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, dict):
            for k, v in node.items():
                yield k, v
                stack.append((v, k, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, key, depth + 1) for item in node)


def _is_safe_target(target: str) -> bool:
    if target in _SYM_TARGETS:
        return True
    if not _OP_TARGET.match(target) or "__" in target:
        return False
    namespace, name = target.split(".")[2:4]
    return namespace in ("aten", "quantized") and is_pure_op(namespace, name)


def _is_custom_op(target: str) -> bool:
    parts = target.split(".")
    return parts[:2] == ["torch", "ops"] and len(parts) > 2 and parts[2] not in ("aten", "prim", "prims", "quantized")


def _is_safe_expression(text, *, guard: bool) -> bool:
    """A whitelist over the Python AST: arithmetic, comparisons, known functions, symbols."""
    if not isinstance(text, str) or len(text) > MAX_EXPRESSION:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    nodes = list(ast.walk(tree))
    return (len(nodes) <= MAX_NODES and all(_safe_node(node, guard) and _small(node) for node in nodes)
            and _bounded(tree.body, 0, 1))


def _bounded(node: ast.AST, depth: int, degree: float) -> bool:
    """Nesting depth and the compounded exponent along every path stay within the static bounds."""
    if depth > MAX_DEPTH:
        return False
    exponent = _exponent(node)
    if exponent is not None:
        degree *= max(abs(exponent), 1)
        if degree > MAX_DEGREE:
            return False
    return all(_bounded(child, depth + 1, degree) for child in ast.iter_child_nodes(node))


def _exponent(node: ast.AST) -> float | None:
    """The literal exponent of a power (``x**3``, ``Pow(x, 3)``, ``1 << 5`` counts 5), else None."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Pow, ast.LShift)):
        right = node.right
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 2 and \
            node.func.id in ("Pow", "PowByNatural", "FloatPow", "LShift"):
        right = node.args[1]
    else:
        return None
    if isinstance(right, ast.UnaryOp) and isinstance(right.operand, ast.Constant):
        right = right.operand
    return right.value if isinstance(right, ast.Constant) and isinstance(right.value, (int, float)) else None


def _small(node: ast.AST) -> bool:
    """No huge literals and no powers with a non-literal or large exponent (``7**7**10``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return len(str(abs(node.value))) <= MAX_DIGITS
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Pow, ast.LShift)):
        exponent = node.right
        return (isinstance(exponent, ast.Constant) and isinstance(exponent.value, (int, float))
                and abs(exponent.value) <= MAX_EXPONENT)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("Pow", "PowByNatural",
                                                                                              "FloatPow", "LShift"):
        return len(node.args) == 2 and _small(ast.BinOp(node.args[0], ast.Pow(), node.args[1]))
    return True


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
