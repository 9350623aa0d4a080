"""libcst helpers shared by the fixers: import aliases, arguments, adding imports."""
from __future__ import annotations

import libcst as cst


# --------------------------------------------------------------------------- names
def _dotted(node) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    return ""


class _Imports(cst.CSTVisitor):
    def __init__(self):
        self.aliases: dict[str, str] = {}

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            full = _dotted(alias.name)
            if alias.asname is not None:
                self.aliases[_dotted(alias.asname.name)] = full
            else:
                top = full.split(".")[0]
                self.aliases[top] = top

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if node.relative or node.module is None or isinstance(node.names, cst.ImportStar):
            return
        module = _dotted(node.module)
        for alias in node.names:
            name = _dotted(alias.name)
            local = _dotted(alias.asname.name) if alias.asname is not None else name
            self.aliases[local] = f"{module}.{name}"


def import_aliases(module: cst.Module) -> dict[str, str]:
    """Local name -> qualified name for every import in the file (any depth)."""
    visitor = _Imports()
    module.visit(visitor)
    return visitor.aliases


def qualname(node, aliases: dict[str, str]) -> str:
    """``F.dropout`` -> ``torch.nn.functional.dropout`` through the file's imports."""
    dotted = _dotted(node)
    if not dotted:
        return ""
    head, _, rest = dotted.partition(".")
    resolved = aliases.get(head, head)
    return f"{resolved}.{rest}" if rest else resolved


def self_name(node, ctx) -> str | None:
    """The first parameter of the method ``node`` sits in (``self``), or None outside a method."""
    for ancestor in ctx.ancestors(node):
        if isinstance(ancestor, (cst.FunctionDef, cst.Lambda)):
            if isinstance(ancestor, cst.Lambda):
                continue
            params = ancestor.params.params
            in_class = any(isinstance(a, cst.ClassDef) for a in ctx.ancestors(ancestor))
            if params and params[0].name.value == "self" and in_class:
                return "self"
            return None
    return None


# --------------------------------------------------------------------------- arguments
def find_arg(call: cst.Call, keyword: str, position: int | None = None) -> int | None:
    """Index in ``call.args`` of the argument passed as ``keyword=`` or at ``position``."""
    for index, arg in enumerate(call.args):
        if arg.keyword is not None and arg.keyword.value == keyword:
            return index
    if position is None:
        return None
    for index, arg in enumerate(call.args):
        if arg.keyword is not None or arg.star:
            return None
        if index == position:
            return index
    return None


def has_star_kwargs(call: cst.Call) -> bool:
    return any(arg.star == "**" for arg in call.args)


def replace_value(call: cst.Call, index: int, value: cst.BaseExpression) -> cst.Call:
    args = list(call.args)
    args[index] = args[index].with_changes(value=value)
    return call.with_changes(args=args)


def append_keyword(call: cst.Call, name: str, value: cst.BaseExpression) -> cst.Call:
    """``f(a, b)`` -> ``f(a, b, name=value)``, in the call's own layout (one argument per line
    stays one per line; a trailing comma stays trailing)."""
    args = list(call.args)
    new = cst.Arg(value=value, keyword=cst.Name(name),
                  equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                        whitespace_after=cst.SimpleWhitespace("")))
    if args:
        last = args[-1]
        new = new.with_changes(comma=last.comma, whitespace_after_arg=last.whitespace_after_arg)
        args[-1] = last.with_changes(comma=_separator(call), whitespace_after_arg=cst.SimpleWhitespace(""))
    args.append(new)
    return call.with_changes(args=args)


def _separator(call: cst.Call) -> cst.Comma:
    """The comma (and line break) the call already puts between two arguments."""
    if len(call.args) >= 2 and isinstance(call.args[-2].comma, cst.Comma):
        whitespace = call.args[-2].comma.whitespace_after
    else:
        whitespace = call.whitespace_before_args
    if isinstance(whitespace, cst.ParenthesizedWhitespace):   # a line break: without its comment
        return cst.Comma(whitespace_after=whitespace.with_changes(first_line=cst.TrailingWhitespace(),
                                                                  empty_lines=()))
    return cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))


def remove_arg(call: cst.Call, index: int) -> cst.Call:
    args = list(call.args)
    removed = args.pop(index)
    if args and index == len(args):            # it was the last: the new last takes its comma
        args[-1] = args[-1].with_changes(comma=removed.comma)
    return call.with_changes(args=args)


# --------------------------------------------------------------------------- imports
class _NameUses(cst.CSTVisitor):
    def __init__(self, name: str):
        self.name = name
        self.count = 0

    def visit_Import(self, node) -> bool:
        return False

    def visit_ImportFrom(self, node) -> bool:
        return False

    def visit_Name(self, node: cst.Name) -> None:
        if node.value == self.name:
            self.count += 1


def name_uses(module: cst.Module, name: str) -> int:
    visitor = _NameUses(name)
    module.visit(visitor)
    return visitor.count


class _AddToImportFrom(cst.CSTTransformer):
    """Add ``name`` to the ``from MODULE import ...`` that binds ``replaces``, or replace that
    alias when nothing uses it any more."""

    def __init__(self, module_name: str, name: str, replaces: str, replace: bool):
        super().__init__()
        self.module_name, self.name, self.replaces, self.replace = module_name, name, replaces, replace
        self.done = False

    def leave_ImportFrom(self, original_node, updated_node):
        if self.done or updated_node.module is None or isinstance(updated_node.names, cst.ImportStar) \
                or _dotted(updated_node.module) != self.module_name:
            return updated_node
        names = list(updated_node.names)
        for index, alias in enumerate(names):
            local = _dotted(alias.asname.name) if alias.asname is not None else _dotted(alias.name)
            if local != self.replaces:
                continue
            self.done = True
            if self.replace:
                names[index] = alias.with_changes(name=cst.Name(self.name), asname=None)
            else:
                new = cst.ImportAlias(name=cst.Name(self.name), comma=alias.comma)
                names[index] = alias.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
                names.insert(index + 1, new)
            return updated_node.with_changes(names=names)
        return updated_node


def _insert_import(module: cst.Module, module_name: str, name: str) -> cst.Module:
    """``from MODULE import NAME`` after the last top-level import (or at the top)."""
    body = list(module.body)
    position = 0
    for index, statement in enumerate(body):
        if isinstance(statement, cst.SimpleStatementLine) and any(
                isinstance(small, (cst.Import, cst.ImportFrom)) for small in statement.body):
            position = index + 1
    body.insert(position, cst.parse_statement(f"from {module_name} import {name}\n"))
    return module.with_changes(body=body)


def add_imports(module: cst.Module, wanted: list[tuple[str, str, str]]) -> cst.Module:
    """Each (module, name, replaces): bind ``name`` from ``module`` unless it already is."""
    for module_name, name, replaces in dict.fromkeys(wanted):
        if import_aliases(module).get(name) == f"{module_name}.{name}":
            continue
        adder = _AddToImportFrom(module_name, name, replaces, replace=name_uses(module, replaces) == 0)
        updated = module.visit(adder)
        module = updated if adder.done else _insert_import(module, module_name, name)
    return module
