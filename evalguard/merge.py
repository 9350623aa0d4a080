"""``evalguard merge REPORT.json...``: one report from the JSON reports of ``--shard K/N`` runs.

The merged report is what one run over all the targets would have produced (targets, findings
and coverage), rendered in any format, with the same exit codes. Reports that cannot belong
together (different rule selections, a target audited twice, shards of different splits) are
refused; a missing shard still gives a report of what is there, and exit code 2.
"""
from __future__ import annotations

import json
from pathlib import Path

from evalguard.errors import UsageError
from evalguard.findings import Finding, Report, Severity


def read_report(path: str) -> Report:
    from evalguard.reporters.json_report import report_from_dict

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read report {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise UsageError(f"{path}: not a JSON report (merge reads `--format json` output)") from None
    try:
        return report_from_dict(data)
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _shard_of(report: Report) -> tuple[int, int] | None:
    value = report.metadata.get("shard")
    if not isinstance(value, str):
        return None
    from evalguard.execution import parse_shard

    try:
        return parse_shard(value)
    except UsageError:
        return None


def missing_shards(shards: list[tuple[int, int] | None], paths: list[str]) -> list[str]:
    """Problems with the set of shards: mixed splits and twice-given shards are usage errors;
    the returned list names the shards that are absent."""
    given = [s for s in shards if s is not None]
    if not given:
        return []
    counts = {count for _, count in given}
    if len(counts) > 1 or len(given) != len(shards):
        raise UsageError("the reports come from different splits (--shard K/N with different N, or unsharded)")
    seen: dict[int, str] = {}
    for shard, path in zip(shards, paths):
        if shard[0] in seen:
            raise UsageError(f"shard {shard[0]}/{shard[1]} is given twice: {seen[shard[0]]} and {path}")
        seen[shard[0]] = path
    total = counts.pop()
    return [f"shard {k}/{total} is missing: its targets are not in this report"
            for k in range(1, total + 1) if k not in seen]


def merge(reports: list[Report], paths: list[str]) -> tuple[Report, list[str]]:
    """The combined report and the problems that make it incomplete (exit code 2)."""
    if not reports:
        raise UsageError("merge needs at least one JSON report")
    selections = {tuple(sorted(r.metadata.get("selected") or [])) for r in reports}
    if len(selections) > 1:
        raise UsageError("the reports were run with different rule selections (--select/--ignore); "
                         "merging them would mix coverage")
    problems = missing_shards([_shard_of(r) for r in reports], paths)
    owner: dict[str, str] = {}
    for report, path in zip(reports, paths):
        for target in report.targets:
            if target.path in owner:
                raise UsageError(f"target {target.path} is in both {owner[target.path]} and {path}")
            owner[target.path] = path
    targets = sorted((t for r in reports for t in r.targets), key=lambda t: t.path)
    findings = sorted((f for r in reports for f in r.findings), key=Finding.sort_key)
    metadata = {key: value for key, value in reports[0].metadata.items() if key not in ("shard", "execution")}
    metadata["merged_from"] = [{"report": path, "shard": r.metadata.get("shard")}
                               for r, path in zip(reports, paths)]
    return Report(targets=tuple(targets), findings=tuple(findings), metadata=metadata), problems


def fail_on_of(reports: list[Report], given: str | None) -> Severity:
    """``--fail-on`` if given, else the threshold the shards ran with (they must agree)."""
    if given:
        return Severity.parse(given)
    values = {str(r.metadata.get("fail_on") or "error") for r in reports}
    if len(values) > 1:
        raise UsageError(f"the reports were run with different --fail-on ({', '.join(sorted(values))}); "
                         "pass --fail-on")
    return Severity.parse(values.pop())


def run_merge(paths: list[str], fmt: str, output: str | None, extra_reports: list[str],
              fail_on: str | None, quiet: bool = False) -> int:
    """``quiet`` (``-q``): the text report's findings only, as ``check -q`` prints them; the
    ``error:`` lines (a target not audited, a missing shard) still go to stderr."""
    import click

    from evalguard.reporters import FORMATS
    from evalguard.run_check import EXIT_ERROR, parse_extra_reports, publish

    extras = parse_extra_reports(extra_reports, FORMATS)
    reports = [read_report(path) for path in paths]
    threshold = fail_on_of(reports, fail_on)
    report, problems = merge(reports, paths)
    report = Report(report.targets, report.findings, {**report.metadata, "fail_on": str(threshold)})
    code = publish(report, fmt, output, extras, threshold, quiet=quiet)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    return EXIT_ERROR if problems else code
