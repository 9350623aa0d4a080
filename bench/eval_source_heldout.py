"""Recall and false positives of the source rules on a held-out corpus of real bugs (issue 27).

Usage::

    python bench/eval_source_heldout.py [DEVSET_DIR] [--json]
    python bench/eval_source_heldout.py --fp-tree PATH [--fp-tree PATH ...] [--json]

DEVSET_DIR (default ``tests/devset/heldout``) holds ``manifest.toml`` and one folder per case with
``bad/`` and ``fixed/`` twins, laid out as ``tests/devset/source``. Each twin is copied to a
temporary folder and checked as a folder through ``evalguard.orchestrator.audit`` with the source rules
selected, exactly as ``tests/test_source_devset.py`` does. Reported per rule:

- recall: bad versions whose ``target`` file (or a file listed in the entry's optional ``also``:
  where the model actually runs when the fix went elsewhere) carries the expected rule; the count
  on ``target`` alone is printed too;
- false positives: findings of the rule anywhere in a fixed twin;
- unexpected: rules reported in a bad version that its manifest entry does not expect (and,
  per case, the expected rule reported on a file other than the target).

``--fp-tree`` instead checks installed package trees (nothing is copied; nothing is modified) and
reports each rule's findings and their rate per 1,000 non-blank lines of ``.py`` files.

This is a measurement, not a test: nobody tunes the rules against the held-out corpus.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DEVSET = REPO / "tests" / "devset" / "heldout"
SOURCE_RULES = frozenset({"EG105", "EG106", "EG201", "EG301", "EG903"})


def _audit_folder(folder: Path):
    from evalguard.orchestrator import audit
    from evalguard.subject import AuditOptions

    return audit([str(folder)], AuditOptions(selected=SOURCE_RULES))


def findings_in(devset: Path, entry: str, variant: str, scratch: Path) -> tuple[dict[str, set[str]], list[str]]:
    """Relative path -> rules reported for one twin checked as a folder, and target errors."""
    project = scratch / entry / variant
    shutil.copytree(devset / entry / variant, project)
    report = _audit_folder(project)
    errors = [f"{t.path}: {t.status}: {t.detail}" for t in report.targets if t.status != "audited"]
    found: dict[str, set[str]] = {}
    for finding in report.findings:
        found.setdefault(Path(finding.location.path).relative_to(project).as_posix(), set()).add(finding.rule)
    return found, errors


def evaluate_devset(devset: Path) -> dict:
    bugs = tomllib.loads((devset / "manifest.toml").read_text())["bug"]
    expected, caught, strict, fixed_fp = Counter(), Counter(), Counter(), Counter()
    cases = []
    with tempfile.TemporaryDirectory(prefix="evalguard-heldout-") as tmp:
        for bug in bugs:
            bad, bad_errors = findings_in(devset, bug["id"], "bad", Path(tmp))
            fixed, fixed_errors = findings_in(devset, bug["id"], "fixed", Path(tmp))
            on_target = bad.get(bug["target"], set())
            on_also = set().union(*(bad.get(path, set()) for path in bug.get("also", [])))
            hits = sorted(rule for rule in bug["rules"] if rule in on_target | on_also)
            for rule in bug["rules"]:
                expected[rule] += 1
                caught[rule] += rule in on_target | on_also
                strict[rule] += rule in on_target
            unexpected = sorted({rule for rules in bad.values() for rule in rules} - set(bug["rules"]))
            accepted = {bug["target"], *bug.get("also", [])}
            off_target = sorted(f"{path}:{rule}" for path, rules in bad.items() if path not in accepted
                                for rule in rules if rule in bug["rules"])
            fixed_rules = sorted({rule for rules in fixed.values() for rule in rules})
            for rule in fixed_rules:
                fixed_fp[rule] += 1
            cases.append({"id": bug["id"], "expected": bug["rules"], "caught": hits,
                          "missed": sorted(set(bug["rules"]) - set(hits)), "unexpected_on_bad": unexpected,
                          "expected_rule_off_target": off_target,
                          "findings_on_fixed": fixed_rules, "errors": bad_errors + fixed_errors,
                          "source": bug.get("source", "")})
    per_rule = {rule: {"expected": expected[rule], "caught": caught[rule], "caught_on_target_only": strict[rule],
                       "recall": round(caught[rule] / expected[rule], 3)} for rule in sorted(expected)}
    return {"devset": str(devset), "cases": cases, "recall": per_rule,
            "total": {"expected": sum(expected.values()), "caught": sum(caught.values())},
            "fixed_twins_with_findings": dict(sorted(fixed_fp.items())),
            "unexpected_on_bad": dict(sorted(Counter(r for c in cases for r in c["unexpected_on_bad"]).items()))}


def count_lines(tree: Path) -> int:
    """Non-blank lines of the ``.py`` files under ``tree``."""
    total = 0
    for path in tree.rglob("*.py"):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        total += sum(1 for line in text.splitlines() if line.strip())
    return total


def evaluate_tree(tree: Path) -> dict:
    lines = count_lines(tree)
    started = time.perf_counter()
    report = _audit_folder(tree)
    seconds = time.perf_counter() - started
    per_rule = Counter(f.rule for f in report.findings)
    where = [f"{f.rule} {f.location.display(with_module=False)}" for f in report.findings]
    return {"tree": str(tree), "lines": lines, "seconds": round(seconds, 1),
            "targets_not_audited": [f"{t.path}: {t.status}: {t.detail}" for t in report.targets
                                    if t.status != "audited"],
            "findings": dict(sorted(per_rule.items())),
            "per_1000_lines": {rule: round(n * 1000 / lines, 4) for rule, n in sorted(per_rule.items())} if lines else {},
            "total_per_1000_lines": round(sum(per_rule.values()) * 1000 / lines, 4) if lines else 0.0,
            "locations": sorted(where)}


def print_devset(result: dict) -> None:
    print(f"held-out corpus: {result['devset']} ({len(result['cases'])} cases)")
    for case in result["cases"]:
        mark = "caught" if not case["missed"] else "MISSED " + ",".join(case["missed"])
        extra = []
        if case["unexpected_on_bad"]:
            extra.append("unexpected on bad: " + ",".join(case["unexpected_on_bad"]))
        if case["expected_rule_off_target"]:
            extra.append("expected rule on another file: " + ",".join(case["expected_rule_off_target"]))
        if case["findings_on_fixed"]:
            extra.append("FP on fixed: " + ",".join(case["findings_on_fixed"]))
        if case["errors"]:
            extra.append("errors: " + "; ".join(case["errors"]))
        print(f"  {case['id']:<40} {','.join(case['expected']):<12} {mark}{'  [' + '; '.join(extra) + ']' if extra else ''}")
    print("recall per rule:")
    for rule, r in result["recall"].items():
        print(f"  {rule}: {r['caught']}/{r['expected']} ({r['recall']:.0%}); "
              f"on the target file alone: {r['caught_on_target_only']}/{r['expected']}")
    total = result["total"]
    print(f"  all: {total['caught']}/{total['expected']}")
    print(f"fixed twins with findings, per rule: {result['fixed_twins_with_findings'] or 'none'}")
    print(f"unexpected rules on bad versions: {result['unexpected_on_bad'] or 'none'}")


def print_tree(result: dict) -> None:
    print(f"{result['tree']}: {result['lines']} non-blank .py lines, {result['seconds']} s, "
          f"{len(result['targets_not_audited'])} targets not audited")
    for line in result["targets_not_audited"]:
        print(f"    not audited: {line}")
    for rule, n in result["findings"].items():
        print(f"  {rule}: {n} findings, {result['per_1000_lines'][rule]} per 1,000 lines")
    print(f"  total: {sum(result['findings'].values())} findings, {result['total_per_1000_lines']} per 1,000 lines")
    for where in result["locations"]:
        print(f"    {where}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("devset", nargs="?", default=str(DEFAULT_DEVSET), help="devset folder with manifest.toml")
    parser.add_argument("--fp-tree", action="append", default=[], metavar="PATH",
                        help="measure findings per 1,000 lines over an installed package tree (repeatable)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    if args.fp_tree:
        results = []
        for tree in args.fp_tree:
            if not Path(tree).is_dir():
                print(f"error: {tree}: not a folder", file=sys.stderr)
                return 2
            results.append(evaluate_tree(Path(tree)))
            if not args.json:
                print_tree(results[-1])
        if args.json:
            print(json.dumps(results, indent=2))
        return 0
    devset = Path(args.devset)
    if not (devset / "manifest.toml").is_file():
        print(f"error: {devset}: no manifest.toml", file=sys.stderr)
        return 2
    result = evaluate_devset(devset)
    print(json.dumps(result, indent=2) if args.json else "", end="\n" if args.json else "")
    if not args.json:
        print_devset(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
