"""The fix driver: one libcst pass rewrites the calls the findings point at (each rule's module
decides how), inserts statements, then a second pass adds or replaces the imports they need."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace

import libcst as cst
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider

from evalguard.fixes import FIXERS, FileFix, Site
from evalguard.fixes._cst import import_aliases


@dataclass
class Edit:
    """What a rule's fixer wants: a replacement call, a statement inserted before another, an import."""

    call: cst.Call | None = None
    unsafe: bool = False
    insert_before: cst.CSTNode | None = None     # an original statement of the module
    insert_code: str = ""
    import_name: tuple[str, str, str] | None = None  # (module, name, local alias it may replace)


@dataclass
class FileContext:
    """What a fixer may ask about the file: parents of original nodes, and its imports."""

    module: cst.Module
    parents: dict
    aliases: dict[str, str]             # local name -> qualified name ("A" -> "torch.optim.Adam")

    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.parents.get(node)

    def ancestors(self, node: cst.CSTNode):
        node = self.parents.get(node)
        while node is not None:
            yield node
            node = self.parents.get(node)

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    def local_name_for(self, qualname: str) -> str | None:
        return next((local for local, qual in self.aliases.items() if qual == qualname), None)


@dataclass
class _Result:
    applied: list[Site] = field(default_factory=list)
    unsafe_skipped: list[Site] = field(default_factory=list)
    unfixable: list[Site] = field(default_factory=list)
    imports: list[tuple[str, str, str]] = field(default_factory=list)


class _Rewriter(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider, ParentNodeProvider)

    def __init__(self, ctx: FileContext, sites: list[Site], unsafe: bool, result: _Result):
        super().__init__()
        self.ctx = ctx
        self.unsafe = unsafe
        self.result = result
        self.pending: dict[tuple[int, int], list[Site]] = {}
        for site in sites:
            self.pending.setdefault((site.line, site.column), []).append(site)
        self.inserts: dict[int, list[str]] = {}     # id(original statement) -> code to put before it

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        start = self.get_metadata(PositionProvider, original_node).start
        # Calls leave innermost first: `model(x).softmax(-1)` matches `model(x)`, as the rules report.
        sites = self.pending.pop((start.line, start.column + 1), [])
        for site in sites:
            fixer = importlib.import_module(f"evalguard.fixes.{FIXERS[site.rule]}")
            edit = fixer.fix(original_node, updated_node, site, self.ctx)
            if edit is None:
                self.result.unfixable.append(site)
            elif edit.unsafe and not self.unsafe:
                self.result.unsafe_skipped.append(site)
            else:
                self.result.applied.append(site)
                if edit.call is not None:
                    updated_node = edit.call
                if edit.insert_before is not None:
                    codes = self.inserts.setdefault(id(edit.insert_before), [])
                    if edit.insert_code not in codes:
                        codes.append(edit.insert_code)
                if edit.import_name is not None:
                    self.result.imports.append(edit.import_name)
        return updated_node

    def _with_inserts(self, original_body, updated_body) -> list:
        body = []
        for original, updated in zip(original_body, updated_body):
            codes = self.inserts.get(id(original))
            if codes:
                new = [cst.parse_statement(code) for code in codes]
                # Comments and blank lines above the block now sit above the inserted line.
                new[0] = new[0].with_changes(leading_lines=updated.leading_lines)
                body.extend(new)
                updated = updated.with_changes(leading_lines=())
            body.append(updated)
        return body

    def leave_IndentedBlock(self, original_node, updated_node):
        return updated_node.with_changes(body=self._with_inserts(original_node.body, updated_node.body))

    def leave_Module(self, original_node, updated_node):
        return updated_node.with_changes(body=self._with_inserts(original_node.body, updated_node.body))


def _in_characters(site: Site, text: str) -> Site:
    """Findings count columns in UTF-8 bytes (Python's ast); libcst counts characters."""
    lines = text.splitlines()
    if not 0 < site.line <= len(lines):
        return site
    prefix = lines[site.line - 1].encode("utf-8")[:site.column - 1]
    return replace(site, column=len(prefix.decode("utf-8", errors="ignore")) + 1)


def apply_fixes(text: str, sites: list[Site], unsafe: bool, path: str) -> FileFix:
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError:
        return FileFix(path, text, text, unfixable=list(sites))
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    parents = wrapper.resolve(ParentNodeProvider)
    ctx = FileContext(module, dict(parents), import_aliases(module))
    result = _Result()
    rewriter = _Rewriter(ctx, [_in_characters(site, text) for site in sites], unsafe, result)
    new_module = wrapper.visit(rewriter)
    result.unfixable.extend(site for left in rewriter.pending.values() for site in left)
    if result.imports:
        from evalguard.fixes._cst import add_imports

        new_module = add_imports(new_module, result.imports)
    return FileFix(path, text, new_module.code, result.applied, result.unsafe_skipped, result.unfixable)
