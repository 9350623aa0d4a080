"""Source rules for Python files, from the AST alone: the file is never imported or executed,
and nothing here imports torch (a run over ``.py`` files must not pay for it).

Rules: EG105 (functional dropout ignoring the mode), EG106 (inference without eval()),
EG201 (Dropout before BatchNorm in ``nn.Sequential`` literals), EG301 (Adam with coupled
weight decay), EG903 (``torch.load(weights_only=False)``). Locations carry a 1-based line and a
1-based column. Suppression comments are applied by the engine, not here.
"""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from evalguard.errors import TargetError
from evalguard.findings import Finding, Location
from evalguard.outcome import CheckOutcome, Outcome
from evalguard.subject import AuditOptions, AuditSubject

#: rule -> module (under evalguard.checks.source) whose ``check(index)`` yields its hits
RULE_MODULES = {
    "EG105": "dropout",
    "EG106": "missing_eval",
    "EG201": "sequential",
    "EG301": "optim",
    "EG903": "load",
}
#: Text a file must contain for a rule to possibly fire (every spelling the rule understands
#: contains it); files without it skip that rule, and files without any skip the analysis.
TRIGGERS = {
    "EG105": re.compile(r"[Dd]ropout|scaled_dot_product_attention"),   # dropout_p= contains "dropout"
    "EG106": re.compile(r"no_grad|inference_mode|set_grad_enabled|predict|infer|serv|handle|test|val|eval|"
                        r"detect|__call__|forward|load|pretrained|weights|embed|nn\.|build"),
    "EG201": re.compile(r"Dropout"),
    "EG301": re.compile(r"Adam"),
    "EG903": re.compile(r"load"),
}


def parse(text: str, path: str) -> ast.Module:
    try:
        return ast.parse(text, filename=path)
    except SyntaxError as exc:
        raise TargetError(f"{path}:{exc.lineno or 0}: invalid Python syntax: {exc.msg}") from None
    except ValueError as exc:       # e.g. null bytes
        raise TargetError(f"{path}: invalid Python source: {exc}") from None


def preload() -> None:
    """Import every rule's module now (they are imported on first use otherwise): worker
    processes forked afterwards inherit them instead of each importing them again."""
    for module in RULE_MODULES.values():
        importlib.import_module(f"evalguard.checks.source.{module}")


def run(subject: AuditSubject, options: AuditOptions) -> CheckOutcome:
    out = Outcome(options, RULE_MODULES)
    text = subject.source_text
    notebook = subject.path.endswith(".ipynb")
    if text is None:
        text = Path(subject.path).read_text(encoding="utf-8")
        if notebook:
            from evalguard.checks.source.notebook import code_of

            try:
                text = code_of(text, subject.path)
            except TargetError as exc:
                out.error(str(exc))
                return out.done()
    try:
        tree = parse(text, subject.path)   # always: a syntax error is reported even if no rule applies
    except TargetError as exc:
        out.error(str(exc))
        return out.done()
    wanted = [rule for rule in RULE_MODULES if options.wants(rule)]
    # A rule whose trigger text is absent has nothing to look at: it ran and found nothing.
    out.ran(*(rule for rule in wanted if not TRIGGERS[rule].search(text)))
    wanted = [rule for rule in wanted if TRIGGERS[rule].search(text)]
    if wanted:
        from evalguard.checks.source.index import FileIndex

        index = FileIndex(tree, subject.path)
        index.text = text          # comments: "MC dropout" said in words
        for rule in wanted:
            module = importlib.import_module(f"evalguard.checks.source.{RULE_MODULES[rule]}")
            for hit in module.check(index):
                if options.min_confidence == "high" and hit.evidence.get("confidence") == "medium":
                    continue
                line, column = hit.node.lineno, hit.node.col_offset + 1
                evidence, message = dict(hit.evidence), hit.message
                if notebook:
                    evidence, message = _in_cell(text, line, evidence, message)
                out.add(Finding(hit.rule, message, Location(path=subject.path, line=line, column=column),
                                evidence=evidence))
            out.ran(rule)
    return out.done()


def _in_cell(text: str, line: int, evidence: dict, message: str) -> tuple[dict, str]:
    """Notebook findings also name the cell and the line in it (see ``notebook``)."""
    from evalguard.checks.source.notebook import cell_location

    where = cell_location(text, line)
    if where is None:
        return evidence, message
    cell, cell_line = where
    return {**evidence, "cell": cell, "cell_line": cell_line}, f"(cell {cell}:line {cell_line}) {message}"
