"""What names mean in one Python file, read from its AST only (nothing is imported or run).

- ``qualname(expr)``: the dotted torch name an expression refers to through any import spelling
  (``import torch.optim as o`` / ``from torch.optim import Adam as A`` / ``optim.Adam``), or None.
- ``value(expr, scope)``: a constant the expression evaluates to (literals, arithmetic, names
  assigned exactly once in the function or at module level), or UNKNOWN.
- ``scopes``: the module and every function, each with its parameters and local assignments.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field

UNKNOWN = object()

#: Names that mean the usual torch module when a file uses them without importing them
#: (snippets, notebooks exported to .py). An import of the same name always wins.
CONVENTIONAL = {"torch": "torch", "nn": "torch.nn", "F": "torch.nn.functional", "optim": "torch.optim"}
#: Private module paths that re-export public names: torch.optim.adam.Adam is torch.optim.Adam.
CANONICAL_PREFIXES = (("torch.nn.modules.", "torch.nn"), ("torch.optim.", "torch.optim"))
STAR_MODULES = ("torch.nn.functional", "torch.optim", "torch.nn", "torch")
STAR_OPTIMIZERS = {"Adam", "AdamW", "NAdam", "RAdam", "Adamax", "SGD", "Adagrad", "RMSprop"}

FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef)


_FIELDS: dict[type, tuple[str, ...]] = {}
# Fields that never hold nodes we need: contexts, identifiers, flags.
_SKIPPED_FIELDS = {"ctx", "type_comment", "id", "attr", "arg", "module", "level", "asname", "kind",
                   "conversion", "is_async", "simple", "name", "names"}
# Leaves nobody looks for in a scope's node list (names and constants are read from their parents).
def _concrete(*bases) -> frozenset:
    found, todo = set(), list(bases)
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return frozenset(found)


_LEAVES = _concrete(ast.Name, ast.Constant, ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


def child_nodes(node: ast.AST) -> list[ast.AST]:
    """Like ``ast.iter_child_nodes``, minus contexts, operators, names and constants.

    Walking every node of a big file is most of the cost of the source rules; leaves are about
    half of all nodes and no rule needs them in a scope's node list.
    """
    kind = type(node)
    fields = _FIELDS.get(kind)
    if fields is None:
        fields = _FIELDS[kind] = tuple(f for f in kind._fields if f not in _SKIPPED_FIELDS or
                                       (f == "names" and kind is not ast.Global and kind is not ast.Nonlocal
                                        and kind is not ast.Import and kind is not ast.ImportFrom))
    children = []
    leaves = _LEAVES
    for name in fields:
        value = getattr(node, name, None)
        if value.__class__ is list:
            children.extend([v for v in value if v.__class__ not in leaves and isinstance(v, ast.AST)])
        elif value is not None and value.__class__ not in leaves and isinstance(value, ast.AST):
            children.append(value)
    return children


def walk_scope(nodes) -> Iterator[ast.AST]:
    """Every node of these statements, without entering nested function or class bodies.

    A nested ``def``/``class`` node itself is yielded (so callers can find definitions), and
    its decorators, defaults and bases are walked: they run in the enclosing scope.
    """
    stack = list(nodes)[::-1]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(_outer_children(node)))


def _outer_children(node: ast.AST) -> list[ast.AST]:
    """Children evaluated in the scope that contains ``node``."""
    kind = type(node)
    if kind is ast.FunctionDef or kind is ast.AsyncFunctionDef:
        args = node.args
        return [n for n in node.decorator_list + args.defaults + [d for d in args.kw_defaults if d is not None]
                if n.__class__ not in _LEAVES]
    if kind is ast.ClassDef:
        return node.decorator_list + node.bases + [k.value for k in node.keywords]
    return child_nodes(node)


@dataclass
class Scope:
    """The module, one function, or one class body: its own code, parameters and assignments.

    A class body is a scope for walking (its statements run once), but methods resolve names
    in the scope around the class, as Python does.
    """

    node: ast.AST
    name: str
    cls: ast.ClassDef | None = None          # for methods: their class
    parent: Scope | None = None
    params: list[str] = field(default_factory=list)
    assigns: dict[str, list[ast.expr]] = field(default_factory=dict)
    children: list[Scope] = field(default_factory=list)
    _nodes: list[ast.AST] = field(default_factory=list, repr=False)
    _calls: list[ast.Call] = field(default_factory=list, repr=False)

    @property
    def body(self) -> list[ast.stmt]:
        return self.node.body

    def nodes(self) -> list[ast.AST]:
        """All nodes of this scope's own code, in source order."""
        return self._nodes

    def calls(self) -> list[ast.Call]:
        return self._calls

    @property
    def is_module(self) -> bool:
        return isinstance(self.node, ast.Module)

    def self_names(self) -> set[str]:
        """The first parameter (``self``) of each enclosing method, innermost first."""
        names = set()
        scope = self
        while scope is not None:
            if scope.cls is not None:
                args = scope.node.args.posonlyargs + scope.node.args.args
                if args:
                    names.add(args[0].arg)
            scope = scope.parent
        return names

    @property
    def is_class_body(self) -> bool:
        return isinstance(self.node, ast.ClassDef)


def _param_names(args: ast.arguments) -> list[str]:
    every = args.posonlyargs + args.args + ([args.vararg] if args.vararg else []) + args.kwonlyargs
    return [a.arg for a in every] + ([args.kwarg.arg] if args.kwarg else [])


def _targets(target: ast.expr) -> Iterator[ast.Name]:
    if isinstance(target, ast.Name):
        yield target
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _targets(element)
    elif isinstance(target, ast.Starred):
        yield from _targets(target.value)


def item_name(node: ast.Subscript) -> str:
    """``cfg["net"]`` as one name: dict entries holding models are traced like variables."""
    return f'{node.value.id}["{node.slice.value}"]'


_OPAQUE = ast.Constant(value=UNKNOWN)    # "assigned, value unknown"


def _record_assign(scope: Scope, node: ast.AST) -> None:
    assigns = scope.assigns
    if isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Name):
                assigns.setdefault(target.id, []).append(node.value)
            elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and \
                    isinstance(target.slice, ast.Constant) and isinstance(target.slice.value, str):
                assigns.setdefault(item_name(target), []).append(node.value)   # cfg["net"] = Net()
            else:   # tuple unpacking: the first name may be what a call builds (model, opt = build(...))
                value = node.value if isinstance(node.value, ast.Call) else _OPAQUE
                for name in _targets(target):
                    assigns.setdefault(name.id, []).append(value)
                    value = _OPAQUE
    elif isinstance(node, ast.AnnAssign):
        if isinstance(node.target, ast.Name) and node.value is not None:
            assigns.setdefault(node.target.id, []).append(node.value)
    elif isinstance(node, ast.AugAssign):
        if isinstance(node.target, ast.Name):
            assigns.setdefault(node.target.id, []).append(_OPAQUE)
    elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
        for name in _targets(node.target):
            assigns.setdefault(name.id, []).append(_OPAQUE)
    elif isinstance(node, ast.withitem):
        if node.optional_vars is not None:
            for name in _targets(node.optional_vars):
                assigns.setdefault(name.id, []).append(_OPAQUE)
    elif isinstance(node, ast.NamedExpr):
        assigns.setdefault(node.target.id, []).append(node.value)


_ASSIGNING = frozenset({ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor, ast.comprehension,
                        ast.withitem, ast.NamedExpr})


class FileIndex:
    """Imports, scopes and constants of one parsed file, built in a single walk of the tree."""

    def __init__(self, tree: ast.Module, path: str | None = None):
        self.tree = tree
        self.path = path                     # the file's path, for resolving imports across the project
        self.aliases: dict[str, str] = {}
        #: name -> (module, attribute or None, relative level), every import spelling, relative ones too
        self.imports: dict[str, tuple[str, str | None, int]] = {}
        self.star_modules: set[str] = set()
        self.module = Scope(tree, "<module>")
        self.scopes: list[Scope] = [self.module]
        self.classes: dict[str, ast.ClassDef] = {}
        self._by_name: dict[str, list[Scope]] | None = None
        self._qualnames: dict[int, str | None] = {}
        self._build()
        self._collect_name_aliases()

    def _build(self) -> None:
        """One walk of the tree; each scope's own code is walked with a plain node stack."""
        pending = [(self.tree.body, self.module)]
        while pending:
            body, scope = pending.pop()
            nodes, calls, stack = scope._nodes, scope._calls, list(reversed(body))
            while stack:
                node = stack.pop()
                nodes.append(node)
                kind = node.__class__
                if kind is ast.Call:
                    calls.append(node)
                elif kind in _ASSIGNING:
                    _record_assign(scope, node)
                elif kind is ast.Import or kind is ast.ImportFrom:
                    self._record_import(node)
                elif kind is ast.FunctionDef or kind is ast.AsyncFunctionDef or kind is ast.ClassDef:
                    pending.append((node.body, self._enter(node, scope)))
                    stack.extend(reversed(_outer_children(node)))
                    continue
                stack.extend(reversed(child_nodes(node)))

    def _enter(self, node, scope: Scope) -> Scope:
        if isinstance(node, ast.ClassDef):
            self.classes.setdefault(node.name, node)
            inner = Scope(node, node.name, None, scope)
        else:   # methods resolve names in the scope around their class
            in_class = scope.is_class_body
            inner = Scope(node, node.name, scope.node if in_class else None,
                          scope.parent if in_class else scope, _param_names(node.args))
        self.scopes.append(inner)
        inner.parent.children.append(inner)
        return inner

    # -- imports and names ------------------------------------------------------------------
    def _record_import(self, node) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.imports[alias.asname] = (alias.name, None, 0)
                else:
                    self.imports.setdefault(alias.name.split(".")[0], (alias.name.split(".")[0], None, 0))
            for alias in node.names:
                if alias.asname:
                    self.aliases[alias.asname] = alias.name
                else:   # `import torch.nn` binds `torch`
                    head = alias.name.split(".")[0]
                    self.aliases[head] = head
        else:
            for alias in node.names:
                if alias.name != "*":
                    self.imports[alias.asname or alias.name] = (node.module or "", alias.name, node.level or 0)
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name == "*":
                    self.star_modules.add(node.module)
                else:
                    self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def _collect_name_aliases(self) -> None:
        """``Opt = torch.optim.Adam`` at module level makes ``Opt(...)`` an Adam call."""
        for name, values in self.module.assigns.items():
            if len(values) == 1 and name not in self.aliases and isinstance(values[0], (ast.Name, ast.Attribute)):
                target = self._qualname(values[0])
                if target and target.startswith("torch"):
                    self.aliases[name] = target

    def qualname(self, node: ast.AST) -> str | None:
        key = id(node)
        if key not in self._qualnames:
            self._qualnames[key] = self._qualname(node)
        return self._qualnames[key]

    def _qualname(self, node: ast.AST) -> str | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        head = self.aliases.get(node.id)
        if head is None:
            head = self._star_or_conventional(node.id)
        if head is None:
            return None
        return canonical(".".join([head, *reversed(parts)]))

    def _star_or_conventional(self, name: str) -> str | None:
        if name in self.module.assigns or name in self.classes or self.functions_named(name):
            return None     # defined in this file
        stars = [m for m in STAR_MODULES if m in self.star_modules]
        if len(stars) > 1:   # several star imports: guess from the spelling
            if name in STAR_OPTIMIZERS and "torch.optim" in stars:
                return f"torch.optim.{name}"
            stars = [m for m in stars if (m in ("torch.nn", "torch.optim")) == name[:1].isupper()] or stars
        if stars:
            return f"{stars[0]}.{name}"
        return CONVENTIONAL.get(name)

    # -- scopes -----------------------------------------------------------------------------
    def functions_named(self, name: str) -> list[Scope]:
        if self._by_name is None:
            self._by_name = {}
            for scope in self.scopes[1:]:
                if not scope.is_class_body:
                    self._by_name.setdefault(scope.name, []).append(scope)
        return self._by_name.get(name, [])

    # -- constants --------------------------------------------------------------------------
    def value(self, node: ast.AST | None, scope: Scope | None = None, depth: int = 0):
        """The constant value of ``node``, or UNKNOWN."""
        if node is None or depth > 8:
            return UNKNOWN
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self._name_value(node.id, scope, depth)
        if isinstance(node, ast.UnaryOp):
            operand = self.value(node.operand, scope, depth + 1)
            if operand is UNKNOWN:
                return UNKNOWN
            try:
                return {ast.USub: lambda v: -v, ast.UAdd: lambda v: +v,
                        ast.Not: lambda v: not v}[type(node.op)](operand)
            except (KeyError, TypeError):
                return UNKNOWN
        if isinstance(node, ast.BinOp):
            return self._binop(node, scope, depth)
        if isinstance(node, (ast.Tuple, ast.List)):
            return [self.value(e, scope, depth + 1) for e in node.elts]
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                return UNKNOWN
            keys = [self.value(k, scope, depth + 1) for k in node.keys]
            if any(k is UNKNOWN for k in keys):
                return UNKNOWN
            return {k: v for k, v in zip(keys, node.values)}   # values stay nodes
        return UNKNOWN

    def _name_value(self, name: str, scope: Scope | None, depth: int):
        while scope is not None:
            if name in scope.params:
                return UNKNOWN
            values = scope.assigns.get(name)
            if values is not None:
                return self.value(values[0], scope, depth + 1) if len(values) == 1 else UNKNOWN
            scope = scope.parent
        values = self.module.assigns.get(name)
        if values is not None and len(values) == 1:
            return self.value(values[0], self.module, depth + 1)
        return UNKNOWN

    def _binop(self, node: ast.BinOp, scope, depth):
        left = self.value(node.left, scope, depth + 1)
        right = self.value(node.right, scope, depth + 1)
        if left is UNKNOWN or right is UNKNOWN:
            return UNKNOWN
        ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
               ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b}
        try:
            if type(node.op) is ast.Pow and abs(right) > 64:
                return UNKNOWN
            return ops[type(node.op)](left, right)
        except (KeyError, TypeError, ArithmeticError, ValueError):
            return UNKNOWN

    def resolve_node(self, node: ast.AST, scope: Scope | None, depth: int = 0) -> ast.AST:
        """Follow a name assigned exactly once to the expression it was assigned (for literals)."""
        while isinstance(node, ast.Name) and depth < 8:
            values = None
            search = scope
            while search is not None and values is None:
                if node.id in search.params:
                    return node
                values = search.assigns.get(node.id)
                search = search.parent
            if values is None:
                values = self.module.assigns.get(node.id)
            if not values or len(values) != 1:
                return node
            node, depth = values[0], depth + 1
        return node


def module_like(index: FileIndex, cls: ast.ClassDef) -> bool:
    """A class that is (probably) an nn.Module: a base spelled ``...Module`` or under ``torch.nn``,
    a module-like base defined in this file or another file of the project, or its own ``forward``."""
    from evalguard.checks.source.project import Symbol, is_module_class

    return is_module_class(Symbol(index, cls))


def canonical(name: str) -> str:
    for prefix, public in CANONICAL_PREFIXES:
        if name.startswith(prefix) and name.count(".") > public.count(".") + 1:
            return f"{public}.{name.rsplit('.', 1)[1]}"
    return name


def call_arg(call: ast.Call, position: int | None, keyword: str | tuple[str, ...]):
    """The argument passed at ``position`` or as ``keyword``; None when absent."""
    keywords = (keyword,) if isinstance(keyword, str) else keyword
    for kw in call.keywords:
        if kw.arg in keywords:
            return kw.value
    if position is not None:
        positional = call.args
        for i, arg in enumerate(positional):
            if isinstance(arg, ast.Starred):
                return None
            if i == position:
                return arg
    return None


@dataclass(frozen=True)
class Hit:
    """One source finding before it becomes a Finding: the node gives line and column."""

    rule: str
    node: ast.AST
    message: str
    evidence: dict = field(default_factory=dict)


def calls_in(index: FileIndex) -> Iterator[tuple[Scope, ast.Call]]:
    """Every call in the file with the scope it runs in."""
    for scope in index.scopes:
        for node in scope.calls():
            yield scope, node


def spelled(node: ast.AST) -> str:
    """The source spelling of an expression, shortened for messages."""
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def argument(index: FileIndex, scope: Scope, call: ast.Call, keyword: str, position: int | None = None):
    """Like ``call_arg``, also looking inside ``**kwargs`` whose dict is known statically."""
    found = call_arg(call, position, keyword)
    if found is not None:
        return found
    for kw in call.keywords:
        if kw.arg is None:
            spread = index.value(kw.value, scope)
            if isinstance(spread, dict) and keyword in spread:
                return spread[keyword]
    return None
