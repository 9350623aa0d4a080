"""The files around the checked one: imports, base classes and factories resolved across a project.

Nothing is imported or run: an ``import`` is followed by looking for the module's file next to the
checked file and in the folders above it (``pkg/mod.py`` or ``pkg/mod/__init__.py``), the way a
script run from its project's root would find it. Each file is parsed at most once per process
and kept while its size and modification time stay the same, so checking a folder parses every
file once however many files import it (the per-run project index is this cache, filled lazily).

- ``resolve(index, expr)``: the class or function an expression names, in this file or another
  file of the project, as a ``Symbol``; None for anything outside the project (torch, pip packages).
- ``is_module_class(symbol)``: whether a class is an ``nn.Module``, decided from its bases resolved
  across files (any name is fine: ``PointNetCls``, ``DeepSpeech``), or from its own ``forward``.
- ``has_no_mode(symbol)``: a plain class (no base, no ``eval``/``train``): its instances have no mode.
- ``mode_dependent(symbol)``: True/False/None, whether a module class holds a layer whose output
  depends on train/eval (Dropout, BatchNorm, RNN dropout, ...), through submodules and bases.
"""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path

from evalguard.checks.source.index import FUNCTION_NODES, FileIndex, Scope

#: How many folders above the checked file an absolute import is looked for.
MAX_UP = 4
MAX_FILE_BYTES = 2_000_000
MAX_DEPTH = 6

_FILES: dict[str, tuple[tuple[int, int], FileIndex | None]] = {}
_MODULES: dict[tuple[str, str, int], str | None] = {}

#: torch.nn classes whose output depends on the mode.
MODE_LAYERS = frozenset(f"torch.nn.{n}" for n in (
    "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d", "LazyBatchNorm2d",
    "LazyBatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "MultiheadAttention",
    "Transformer", "TransformerEncoder", "TransformerDecoder", "TransformerEncoderLayer",
    "TransformerDecoderLayer", "RNN", "LSTM", "GRU"))
MODE_FUNCTIONS = frozenset({"torch.nn.functional.dropout", "torch.nn.functional.dropout2d",
                            "torch.nn.functional.batch_norm", "torch.nn.functional.dropout1d",
                            "torch.nn.functional.dropout3d", "torch.nn.functional.alpha_dropout"})
#: Bases that make a class an nn.Module without adding layers of their own.
MODULE_BASES = frozenset({"torch.nn.Module", "torch.nn.modules.module.Module", "pytorch_lightning.LightningModule",
                          "lightning.LightningModule", "lightning.pytorch.LightningModule"})
#: Model libraries whose constructors return mode-dependent networks.
MODEL_LIBRARIES = ("torchvision.models.", "timm.", "segmentation_models_pytorch.")


@dataclass(frozen=True)
class Symbol:
    """A class or function definition in some file of the project."""

    index: FileIndex
    node: ast.AST                  # ast.ClassDef or a function node
    scope: Scope | None = None     # for functions: their scope

    @property
    def is_class(self) -> bool:
        return isinstance(self.node, ast.ClassDef)


def file_index(path: str | os.PathLike) -> FileIndex | None:
    """The parsed index of a project file (cached while the file is unchanged), or None."""
    path = os.path.abspath(path)
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _FILES.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    index = None
    if stat.st_size <= MAX_FILE_BYTES:
        try:
            index = FileIndex(ast.parse(Path(path).read_text(encoding="utf-8", errors="replace")), path)
        except (SyntaxError, ValueError, RecursionError):
            index = None
    _FILES[path] = (key, index)
    return index


def module_path(from_path: str | None, module: str, level: int) -> str | None:
    """The file of ``module`` as imported from ``from_path`` (``level`` dots for relative imports)."""
    if not from_path:
        return None
    folder = os.path.dirname(os.path.abspath(from_path))
    key = (folder, module, level)
    if key not in _MODULES:
        _MODULES[key] = _find_module(folder, module, level)
    return _MODULES[key]


def _find_module(folder: str, module: str, level: int) -> str | None:
    parts = [p for p in module.split(".") if p]
    if level:
        base = folder
        for _ in range(level - 1):
            base = os.path.dirname(base)
        bases = [base]
    else:
        bases, base = [], folder
        for _ in range(MAX_UP + 1):
            bases.append(base)
            parent = os.path.dirname(base)
            if parent == base:
                break
            base = parent
    for base in bases:
        target = os.path.join(base, *parts)
        if parts and os.path.isfile(target + ".py"):
            return target + ".py"
        if os.path.isfile(os.path.join(target, "__init__.py")):
            return os.path.join(target, "__init__.py")
    return None


def _top_level(index: FileIndex, name: str) -> Symbol | None:
    cls = index.classes.get(name)
    if cls is not None:
        return Symbol(index, cls)
    for scope in index.functions_named(name):
        if scope.parent is index.module and scope.cls is None:
            return Symbol(index, scope.node, scope)
    return None


def lookup(index: FileIndex, name: str, depth: int = 0) -> Symbol | None:
    """What ``name`` means at the top level of ``index``'s file: defined there or imported."""
    found = _top_level(index, name)
    if found is not None or depth > MAX_DEPTH:
        return found
    imported = index.imports.get(name)
    if imported is None:
        return None
    module, attr, level = imported
    if attr is None:
        return None          # a module, not a definition
    target = module_path(index.path, module, level)
    other = file_index(target) if target else None
    if other is not None and other is not index:
        found = lookup(other, attr, depth + 1)
        if found is not None:
            return found
    # `from pkg import mod` where mod is a submodule: not a definition either
    return None


def _module_of(index: FileIndex, name: str) -> FileIndex | None:
    """The project file a module name (``import pkg.mod as m`` / ``from pkg import mod``) refers to."""
    imported = index.imports.get(name)
    if imported is None:
        return None
    module, attr, level = imported
    dotted = f"{module}.{attr}" if attr is not None and module else (attr or module)
    target = module_path(index.path, dotted, level)
    return file_index(target) if target else None


def resolve(index: FileIndex, expr: ast.AST) -> Symbol | None:
    """The class or function ``expr`` (``Name`` or ``module.Name``) refers to, across the project."""
    if not getattr(index, "path", None) and not isinstance(expr, ast.Name):
        return None
    if isinstance(expr, ast.Name):
        return lookup(index, expr.id)
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        other = _module_of(index, expr.value.id)
        if other is not None:
            return lookup(other, expr.attr)
    return None


def is_module_class(symbol: Symbol, depth: int = 0, by_forward: bool = True) -> bool:
    """Whether a class is (probably) an nn.Module: its bases, resolved across files, or a ``forward``
    (unless ``by_forward`` is False)."""
    cls = symbol.node
    for base in cls.bases:
        if _base_is_module(symbol.index, base, depth):
            return True
    if has_no_mode(symbol) and not _builds_layers(symbol):
        return False      # no base, no eval()/train(), no layers: a forward() makes an adapter around a model
    return by_forward and any(isinstance(s, FUNCTION_NODES) and s.name == "forward" for s in cls.body)


def has_module_base(symbol: Symbol, depth: int = 0) -> bool:
    """Whether a base class, followed across files, is ``nn.Module`` itself (or named ``...Module``):
    stricter than ``is_module_class``, for which a ``forward`` of a base is enough."""
    for base in symbol.node.bases:
        name = base.attr if isinstance(base, ast.Attribute) else base.id if isinstance(base, ast.Name) else ""
        if name.endswith("Module") or (symbol.index.qualname(base) or "").startswith("torch.nn."):
            return True
        parent = resolve(symbol.index, base) if depth < MAX_DEPTH else None
        if parent is not None and parent.is_class and parent.node is not symbol.node \
                and has_module_base(parent, depth + 1):
            return True
    return False


_BUILDS: dict[int, tuple[ast.AST, bool]] = {}


def _builds_layers(symbol: Symbol) -> bool:
    """A mixin that builds ``torch.nn`` layers (``self.dropout = nn.Dropout(p)``) is mixed into a module
    (memoised per class node; the node is kept with the answer so that its id is not reused)."""
    cached = _BUILDS.get(id(symbol.node))
    if cached is None or cached[0] is not symbol.node:
        cached = _BUILDS[id(symbol.node)] = (symbol.node, _scan_builds(symbol))
    return cached[1]


def _scan_builds(symbol: Symbol) -> bool:
    index = symbol.index
    return any(isinstance(n, ast.Call) and (index.qualname(n.func) or "").startswith("torch.nn.")
               and not (index.qualname(n.func) or "").startswith("torch.nn.functional.")
               for n in ast.walk(symbol.node))


def has_no_mode(symbol: Symbol, depth: int = 0, parents: bool = False) -> bool:
    """A class with no base (or only ``object``, ``abc.ABC``, ``Generic``, or with ``parents`` plain
    classes of the project) and no ``eval``/``train`` of its own: whatever its ``forward`` looks like, it is no
    nn.Module and its instances have no mode to switch (a wrapper around a compiled module, such as
    ``torch.jit.mobile.LiteScriptModule``)."""
    cls = symbol.node
    if not all(_plain_base(b) or (parents and _plain_parent(symbol.index, b, depth)) for b in cls.bases):
        return False
    return not any(isinstance(s, FUNCTION_NODES) and s.name in ("eval", "train") for s in cls.body)


#: Bases that give a class no module behaviour: an abstract adapter (``abc.ABC``) is still a plain class.
PLAIN_BASES = frozenset({"object", "ABC", "Generic", "Protocol"})


def _plain_base(base: ast.AST) -> bool:
    if isinstance(base, ast.Subscript):             # Generic[T]
        base = base.value
    name = base.attr if isinstance(base, ast.Attribute) else base.id if isinstance(base, ast.Name) else ""
    return name in PLAIN_BASES


def _plain_parent(index: FileIndex, base: ast.AST, depth: int) -> bool:
    """A base defined in the project that is itself a plain class (an abstract runner interface)."""
    if depth >= MAX_DEPTH:
        return False
    parent = resolve(index, base)
    return parent is not None and parent.is_class and parent.node is not base and has_no_mode(parent, depth + 1, True)


def _base_is_module(index: FileIndex, base: ast.AST, depth: int) -> bool:
    name = base.attr if isinstance(base, ast.Attribute) else base.id if isinstance(base, ast.Name) else ""
    if name.endswith("Module") or (index.qualname(base) or "").startswith("torch.nn."):
        return True
    if depth >= MAX_DEPTH:
        return False
    parent = resolve(index, base)
    return parent is not None and parent.is_class and parent.node is not base and is_module_class(parent, depth + 1)


def base_symbols(symbol: Symbol) -> list[Symbol]:
    """The class's bases that are defined in the project, nearest first."""
    found = []
    for base in symbol.node.bases:
        parent = resolve(symbol.index, base)
        if parent is not None and parent.is_class and parent.node is not symbol.node:
            found.append(parent)
    return found


def mode_dependent(symbol: Symbol, depth: int = 0) -> bool | None:
    """True when the class (with its bases and in-project submodule classes) builds a mode-dependent
    layer; False when every layer it builds is known and none is; None when that cannot be told
    (a submodule of unknown type, a base outside the project, or no layer seen at all)."""
    found, known, unknown = _layers_of(symbol, depth)
    if found:
        return True
    return None if unknown or not known else False


def _layers_of(symbol: Symbol, depth: int) -> tuple[bool, int, bool]:
    """(a mode-dependent layer found, layers known not to be, something unknown) for a class."""
    node = symbol.node              # the verdict lives on the class node: a re-parsed file starts afresh
    if depth > MAX_DEPTH:
        return False, 0, True
    if not hasattr(node, "_evalguard_layers"):
        node._evalguard_layers = (False, 0, True)          # recursion: not known yet
        node._evalguard_layers = _scan_layers(symbol, depth)
    return node._evalguard_layers


def _is_plain_value(node: ast.AST) -> bool:
    """Names that hold settings rather than modules (``self.p = p``, ``self.num_classes = k``)."""
    name = node.id if isinstance(node, ast.Name) else ""
    return bool(name) and not any(word in name.lower() for word in (
        "model", "net", "layer", "module", "block", "feature", "encoder", "decoder", "backbone", "head", "body"))


def _scan_layers(symbol: Symbol, depth: int) -> tuple[bool, int, bool]:
    index, known = symbol.index, 0
    nodes = list(ast.walk(symbol.node))
    assigned = [n.value for n in nodes if isinstance(n, ast.Assign) and any(
        isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self" for t in n.targets)]
    submodules = {id(v) for v in assigned}
    # self.features = features (a module handed in): what it holds is not known here
    unknown = any(isinstance(v, (ast.Name, ast.Subscript)) and not _is_plain_value(v) for v in assigned)
    for node in nodes:
        if isinstance(node, ast.Attribute) and node.attr == "training" and isinstance(node.value, ast.Name) \
                and node.value.id == "self" and isinstance(node.ctx, ast.Load):
            return True, known, unknown           # `if self.training: ...` written by hand
        if not isinstance(node, ast.Call):
            continue
        verdict = _call_mode(index, node, depth)
        if verdict is True:
            return True, known, unknown
        if verdict is None and id(node) in submodules:
            unknown = True
        known += verdict is False
    for base in symbol.node.bases:
        qualname = index.qualname(base) or ""
        if qualname in MODULE_BASES or qualname.startswith("torch.nn.Module"):
            continue
        parent = resolve(index, base)
        if parent is None or not parent.is_class:
            unknown = True
            continue
        found, base_known, base_unknown = _layers_of(parent, depth + 1)
        if found:
            return True, known, unknown
        known, unknown = known + base_known, unknown or base_unknown
    return False, known, unknown


def _call_mode(index: FileIndex, call: ast.Call, depth: int) -> bool | None:
    """Whether one call inside a class body builds or runs something mode-dependent."""
    qualname = index.qualname(call.func) or ""
    if qualname in MODE_LAYERS or qualname in MODE_FUNCTIONS or qualname.startswith(MODEL_LIBRARIES):
        return True
    if qualname.startswith("torch."):
        return False
    target = resolve(index, call.func)
    if target is not None and target.is_class:
        if not is_module_class(target):
            return False
        found, _, unknown = _layers_of(target, depth + 1)
        return True if found else None if unknown else False
    return None


# -- call sites across the project ------------------------------------------------------------
#: At most this many files are read when looking for the callers of one function.
MAX_PROJECT_FILES = 4000
MAX_CALLER_FILES = 12
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "dist-packages", "build", "dist", "venv"}
_MARKERS = (".git", "setup.py", "pyproject.toml", "setup.cfg", "requirements.txt")
_ROOTS: dict[str, str] = {}
_TREES: dict[str, list[str]] = {}
_WORDS: dict[str, list[tuple[str, str]]] = {}


def project_root(path: str) -> str:
    """The folder whose files may call into ``path``: the folder above its top package (not a
    site-packages folder), or the nearest folder within two levels holding a project marker."""
    folder = os.path.dirname(os.path.abspath(path))
    if folder in _ROOTS:
        return _ROOTS[folder]
    top = folder
    while os.path.isfile(os.path.join(top, "__init__.py")) and os.path.dirname(top) != top:
        top = os.path.dirname(top)
    root = top
    if top != folder and top.endswith("-packages"):
        root = folder
        while os.path.dirname(root) != top:
            root = os.path.dirname(root)
    elif top == folder:
        up = folder
        for _ in range(2):
            if any(os.path.exists(os.path.join(up, m)) for m in _MARKERS):
                root = up
                break
            up = os.path.dirname(up)
    _ROOTS[folder] = root
    return root


def _project_files(root: str) -> list[str]:
    if root not in _TREES:
        found: list[str] = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
            found += [os.path.join(folder, f) for f in sorted(files) if f.endswith(".py")]
            if len(found) >= MAX_PROJECT_FILES:
                break
        _TREES[root] = found[:MAX_PROJECT_FILES]
    return _TREES[root]


def _texts(root: str) -> list[tuple[str, str]]:
    """(path, text) of every project file (read once per root and process)."""
    if root not in _WORDS:
        texts = []
        for path in _project_files(root):
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    texts.append((path, handle.read(MAX_FILE_BYTES)))
            except OSError:
                continue
        _WORDS[root] = texts
    return _WORDS[root]


def files_naming(index: FileIndex, name: str) -> list[FileIndex]:
    """This file and the other files of the project whose text mentions ``name`` (at most
    ``MAX_CALLER_FILES`` others: a name used everywhere is not followed)."""
    if not index.path:
        return [index]
    here = os.path.abspath(index.path)
    others = [f for f, text in _texts(project_root(here)) if name in text and f != here]
    if len(others) > MAX_CALLER_FILES:
        return [index]
    return [index, *(other for other in map(file_index, others) if other is not None)]


def callers(index: FileIndex, target: ast.AST, name: str) -> list[tuple[FileIndex, Scope, ast.Call]]:
    """Calls in other files of the project that resolve to ``target`` (a function or class named
    ``name`` defined at the top level of ``index``'s file). A name called from more than
    ``MAX_CALLER_FILES`` files is a shared utility: its callers are not read (too many to weigh)."""
    if not index.path:
        return []
    here = os.path.abspath(index.path)
    needle = f"{name}("
    candidates = [f for f, text in _texts(project_root(here)) if needle in text and f != here]
    if len(candidates) > MAX_CALLER_FILES:
        return []
    found = []
    for path in candidates:
        other = file_index(path)
        if other is None:
            continue
        for scope in other.scopes:
            for call in scope.calls():
                func = call.func
                short = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if short == name:
                    symbol = resolve(other, func)
                    # the checked file may be indexed twice (its own run, and the project cache)
                    if symbol is not None and (symbol.node is target or (
                            os.path.abspath(symbol.index.path or "") == here
                            and symbol.node.lineno == target.lineno)):
                        found.append((other, scope, call))
    return found
