"""Read a saved program (TorchScript code, .pt2 graph targets) statically: every call must be pure.

TorchScript archives carry their program as Python-syntax source in ``code/``; ``torch.jit.load``
compiles it and runs ``__setstate__``, and ``forward`` runs the rest. Here the source is only
parsed with ``ast`` (never compiled) and every reference must be one of:

* ``torch.<op>`` / ``ops.aten.<op>`` / ``ops.prim.<op>`` / ``ops.quantized.<op>`` with ``<op>``
  allowed in ``ops.toml`` (the reviewed op list: every op family with the reason it is allowed
  or excluded);
* a class or function defined in the archive itself (``__torch__.…``);
* a method call whose name is a pure op (tensor methods) or a list/dict/str method; a method
  defined in the archive only where the receiver is provably an instance of an archive class
  (``self``, a parameter annotated ``__torch__.…``, an attribute the class annotates so, or a
  local only ever assigned one of those): on any other receiver TorchScript resolves the name
  to the aten op of that name, whatever the archive defines. An archive method named like an
  aten op outside the allowed list is refused outright;
* a TorchScript builtin (``len``, ``range``…). ``getattr(obj, "name")`` with a constant name is
  read as ``obj.name``; a call of any other computed value is refused.

``__setstate__``/``__getstate__`` may only assign attributes and return values. Anything else
is reported as "op (in method)" for EG904; nothing is executed.
"""
from __future__ import annotations

import ast
import functools
from importlib import resources

#: TorchScript builtins that serialized code calls by bare name.
_BUILTINS = frozenset({"len", "range", "int", "float", "bool", "str", "getattr", "isinstance", "annotate",
                       "uninitialized", "unchecked_cast", "list", "dict", "tuple", "min", "max", "abs",
                       "enumerate", "zip", "hasattr", "round", "divmod", "sorted", "all", "any", "sum",
                       "chr", "ord", "hash", "complex", "fork", "wait", "_unwrap_optional", "NamedTuple"})
#: Methods of TorchScript lists, dicts and strings.
_CONTAINER_METHODS = frozenset({"append", "extend", "insert", "pop", "remove", "clear", "copy", "reverse",
                                "sort", "index", "count", "keys", "values", "items", "get", "setdefault",
                                "update", "popitem", "format", "join", "split", "strip", "lstrip", "rstrip",
                                "startswith", "endswith", "upper", "lower", "replace", "find", "isdigit",
                                "forward", "__getitem__", "__len__", "__contains__"})
#: Container methods whose aten namesake is excluded only because of what it does to a sparse tensor
#: (``aten::values``; serialized code writes ``d.values()`` as ``torch.values(d)``): no allowed op
#: builds a sparse tensor, the pickle allow-list rebuilds none, and on a dense one it raises.
_CONTAINER_ONLY = frozenset({"values"})
#: Names that only type annotations use (``Optional[Tensor]``), never called.
_TYPE_NAMES = frozenset({"Tensor", "Optional", "List", "Dict", "Tuple", "Union", "Final", "NoneType", "Any",
                         "Future", "Await", "Device", "Enum", "Module", "__annotations__", "__parameters__",
                         "__buffers__", "int", "float", "bool", "str", "number", "Stream", "Storage"})
_STATE_METHODS = ("__setstate__", "__getstate__")
#: torch attributes that are values, not calls (dtypes and layouts TorchScript names as constants).
_TORCH_VALUES = frozenset({"float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
                           "uint8", "bool", "long", "float", "double", "half", "int", "strided",
                           "contiguous_format", "channels_last", "preserve_format", "inf", "nan", "pi", "e"})


#: ``__torch__.torch.classes.<ns>.<Name>`` is how archive code names a C++ class registered with
#: torch; torch resolves it to the registered class first, so archive code under that path never
#: defines it. These are the reviewed ones a program may hold: the packed weights of
#: ``torch.ao.quantization`` modules (made by the allowed ``quantized::*_prepack`` ops).
CUSTOM_CLASS_PREFIX = "__torch__.torch.classes."
REVIEWED_CUSTOM_CLASSES = frozenset({"quantized.LinearPackedParamsBase", "quantized.Conv2dPackedParamsBase",
                                     "quantized.Conv3dPackedParamsBase", "rnn.CellParamsBase"})

#: Namespaces whose ops ``ops.toml`` reviews; any other namespace is a custom op.
REVIEWED_NAMESPACES = ("aten", "prim", "quantized")


@functools.lru_cache(maxsize=1)
def op_table() -> dict[str, dict[str, dict[str, dict]]]:
    """``ops.toml``: ``{namespace: {"allowed"|"excluded": {family: {"reason", "ops"}}}}``."""
    import tomllib

    data = resources.files("evalguard.loading").joinpath("ops.toml").read_bytes()
    return tomllib.loads(data.decode("utf-8"))


@functools.lru_cache(maxsize=1)
def unsafe_aten_names() -> frozenset[str]:
    """Aten op names outside the allowed list (``ops.toml`` reviews every aten op of torch)."""
    excluded = op_table().get("aten", {}).get("excluded", {})
    return frozenset(op for family in excluded.values() for op in family["ops"]) - pure_ops()["aten"]


@functools.lru_cache(maxsize=1)
def pure_ops() -> dict[str, frozenset[str]]:
    """``{"aten": names, "prim": names, "quantized": names}``: the allowed ops of ``ops.toml``."""
    return {namespace: frozenset(op for family in table.get("allowed", {}).values() for op in family["ops"])
            for namespace, table in op_table().items()}


def is_pure_op(namespace: str, name: str) -> bool:
    return name in pure_ops().get(namespace, frozenset())


def scan_torchscript_code(archive) -> list[str]:
    """Unsafe references in every ``code/**.py`` member of a TorchScript archive."""
    sources = {}
    for name in archive.names():
        inner = name[len(archive.prefix):]
        if inner.lower().startswith("code/") and inner.lower().endswith(".py"):
            sources[inner] = archive.read(name).decode("utf-8", errors="replace")
    trees, problems = {}, []
    for inner, text in sources.items():
        try:
            trees[inner] = ast.parse(text)
        except (SyntaxError, ValueError):
            problems.append(f"unreadable program source ({inner})")
    trees = {inner: _ConstantGetattr().visit(tree) for inner, tree in trees.items()}
    defined, classes = _definitions(trees)
    problems += [f"method {name} defined in the archive's code ({qualname}) shadows the excluded aten op {name}"
                 for qualname, (_, methods) in sorted(classes.items())
                 for name in sorted(methods & unsafe_aten_names())]
    shadows = sorted(name for name in defined if name.startswith(CUSTOM_CLASS_PREFIX))
    problems += [f"{name} defined in the archive's code (torch resolves that name to its registered C++ class, "
                 "not to this code)" for name in shadows]
    defined -= set(shadows)
    for inner, tree in trees.items():
        problems += _ProgramVisitor(inner, defined, classes).run(tree)
    return list(dict.fromkeys(problems))


#: ``{qualified class name: (attribute name -> archive class it is annotated with, method names)}``.
Classes = dict[str, tuple[dict[str, str], set[str]]]


def _definitions(trees: dict[str, ast.Module]) -> tuple[set[str], Classes]:
    """Qualified names (``__torch__.a.b.Name``) the archive defines, and its classes."""
    defined, classes = set(), {}
    for inner, tree in trees.items():
        module = inner[len("code/"):-len(".py")].replace("/", ".")
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                defined.add(f"{module}.{node.name}")
            if isinstance(node, ast.ClassDef):
                classes[f"{module}.{node.name}"] = (_attribute_classes(node),
                                                    {n.name for n in node.body if isinstance(n, ast.FunctionDef)})
    return defined, classes


def _archive_class(annotation: ast.AST | None) -> str | None:
    """The archive class an annotation names (``__torch__.a.B``), else None."""
    dotted = _dotted(annotation) if annotation is not None else None
    if dotted and dotted.startswith("__torch__.") and not dotted.startswith(CUSTOM_CLASS_PREFIX):
        return dotted
    return None


def _attribute_classes(node: ast.ClassDef) -> dict[str, str]:
    """Attributes the class body annotates with an archive class (``lin : __torch__.Linear`` or
    ``__annotations__["0"] = __torch__.ReLU``)."""
    found = {}
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            name, annotation = item.target.id, item.annotation
        elif (isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Subscript)
              and _dotted(item.targets[0].value) == "__annotations__"
              and isinstance(item.targets[0].slice, ast.Constant)):
            name, annotation = str(item.targets[0].slice.value), item.value
        else:
            continue
        if (cls := _archive_class(annotation)) is not None:
            found[name] = cls
    return found


class _ConstantGetattr(ast.NodeTransformer):
    """``getattr(obj, "name")`` is ``obj.name`` (TorchScript resolves it the same way)."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if (isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) == 2
                and not node.keywords and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)):
            return ast.copy_location(ast.Attribute(value=node.args[0], attr=node.args[1].value, ctx=ast.Load()), node)
        return node


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _local_classes(node: ast.FunctionDef, classes: Classes) -> dict[str, str]:
    """Locals of a function that are provably archive-class instances: parameters annotated with an
    archive class, and names only ever bound by ``name = <provable archive-class value>``."""
    known = {a.arg: cls for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs
             if (cls := _archive_class(a.annotation)) is not None}
    params = {a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs}
    assigned: dict[str, list[ast.AST]] = {}
    plain = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Assign) and len(sub.targets) == 1 and isinstance(sub.targets[0], ast.Name):
            assigned.setdefault(sub.targets[0].id, []).append(sub.value)
            plain.add(id(sub.targets[0]))
    # Names bound any other way (tuple unpacking, for, with, augmented assignment, nested
    # parameters...) are never proven.
    other = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
             and isinstance(n.ctx, (ast.Store, ast.Del)) and id(n) not in plain}
    other |= {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)} - params
    changed = True
    while changed:
        changed = False
        for name, values in assigned.items():
            if name in known or name in other or name in params:
                continue
            types = {_value_class(v, known, classes) for v in values}
            if len(types) == 1 and None not in types:
                known[name] = types.pop()
                changed = True
    return known


def _value_class(node: ast.AST, known: dict[str, str], classes: Classes) -> str | None:
    """The archive class of an expression, where the scan can prove it; else None."""
    if isinstance(node, ast.Name):
        return known.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _value_class(node.value, known, classes)
        if owner is not None and owner in classes:
            return classes[owner][0].get(node.attr)
    return None


class _ProgramVisitor(ast.NodeVisitor):
    def __init__(self, member: str, defined: set[str], classes: Classes):
        self.member, self.defined, self.classes = member, defined, classes
        self.where = member
        self.locals: dict[str, str] = {}
        self.problems: list[str] = []

    def run(self, tree: ast.Module) -> list[str]:
        self.visit(tree)
        return self.problems

    def report(self, what: str) -> None:
        self.problems.append(f"{what} (in {self.where})")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        outer = self.where
        self.where = f"{self.member}:{node.name}"
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name in _STATE_METHODS:
                self._check_state_method(item)
            self.visit(item)
        self.where = outer

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        outer = self.where
        self.where = f"{outer}.{node.name}" if ":" in outer else f"{self.member}:{node.name}"
        if node.decorator_list:
            self.report("decorated function")
        outer_locals, self.locals = self.locals, _local_classes(node, self.classes)
        self.generic_visit(node)
        self.where, self.locals = outer, outer_locals

    def _check_state_method(self, node: ast.FunctionDef) -> None:
        for statement in node.body:
            plain = (isinstance(statement, ast.Assign) and all(isinstance(t, ast.Attribute) for t in statement.targets)
                     or isinstance(statement, (ast.Return, ast.Pass, ast.AnnAssign, ast.Expr)))
            calls = [n for n in ast.walk(statement) if isinstance(n, ast.Call)
                     and _dotted(n.func) not in ("annotate", "unchecked_cast", "uninitialized")]
            if not plain or calls:
                self.report(f"{node.name} doing more than assigning attributes")
                return

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            if func.id not in _BUILTINS and not func.id.startswith("_"):
                self.report(f"call of {func.id}")
            if func.id == "getattr" and not (len(node.args) == 2 and isinstance(node.args[1], ast.Constant)):
                self.report("getattr with a computed name")
        elif isinstance(func, ast.Attribute):
            dotted = _dotted(func)
            if dotted is None or dotted.split(".")[0] not in ("torch", "ops", "__torch__"):
                self._check_method(func)
        else:
            self.report("call of a computed value")
        self.generic_visit(node)

    def _check_method(self, func: ast.Attribute) -> None:
        name = func.attr
        owner = _value_class(func.value, self.locals, self.classes)
        if owner is not None and owner in self.classes:
            if name not in self.classes[owner][1]:
                self.report(f"method {name}() (not defined by {owner})")
            return
        # Receiver not provably an archive class: TorchScript resolves the name as the op of that name.
        if name in unsafe_aten_names() and name not in _CONTAINER_ONLY:
            self.report(f"method {name}() (the aten op {name} is not on the allowed list)")
        elif not (is_pure_op("aten", name) or name in _CONTAINER_METHODS):
            self.report(f"method {name}()")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = _dotted(node)
        root = dotted.split(".")[0] if dotted else None
        if (root not in ("torch", "ops", "__torch__") and node.attr in unsafe_aten_names()
                and node.attr not in _CONTAINER_ONLY and _value_class(node.value, self.locals, self.classes) is None):
            self.report(f"{node.attr} (the aten op {node.attr} is not on the allowed list)")
        if dotted is None:
            self.generic_visit(node)
            return
        parts = dotted.split(".")
        if root == "torch":
            self._check_torch(parts)
        elif root == "ops":
            self._check_ops(parts)
        elif dotted.startswith(CUSTOM_CLASS_PREFIX):
            name = ".".join(parts[3:5])
            if name not in REVIEWED_CUSTOM_CLASSES:
                self.report(f"{dotted} (a C++ custom class outside the reviewed list)")
        elif root == "__torch__":
            if dotted not in self.defined and not any(dotted.startswith(d + ".") for d in self.defined):
                self.report(f"{dotted} (not defined in the archive)")
        elif len(parts) >= 2 and parts[-1] in ("from_file", "_new_shared_filename", "_share_filename_"):
            self.report(f"{parts[-1]}")
        # other plain attribute reads (self.weight, x.shape) are data

    def _check_torch(self, parts: list[str]) -> None:
        if len(parts) == 2 and (is_pure_op("aten", parts[1]) or parts[1] in _TORCH_VALUES
                                or parts[1] in _CONTAINER_ONLY):   # dict.values() is torch.values(d)
            return
        if parts[:2] == ["torch", "jit"] and parts[-1] in ("_unwrap_optional", "annotate", "is_scripting"):
            return
        self.report(".".join(parts))

    def _check_ops(self, parts: list[str]) -> None:
        if len(parts) == 3 and parts[1] in REVIEWED_NAMESPACES and is_pure_op(parts[1], parts[2]):
            return
        namespace = parts[1] if len(parts) > 1 else "?"
        kind = "" if namespace in REVIEWED_NAMESPACES else " (custom op namespace)"
        self.report(f"{'.'.join(parts)}{kind}")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in ("exec", "eval", "open", "__import__", "compile", "globals", "locals", "vars"):
            self.report(node.id)
