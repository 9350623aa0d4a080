"""`evalguard check`: merge flags with [tool.evalguard], run the engine, render, pick the exit code."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from evalguard.catalogue import load_catalogue, resolve_rule_selectors
from evalguard.config import FileConfig, load_config
from evalguard.errors import UsageError
from evalguard.execution import build_execution
from evalguard.findings import Report, Severity
from evalguard.subject import AuditOptions

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


@dataclass
class CheckRequest:
    targets: list[str]
    model_factory: str | None = None
    trust_modules: list[str] = field(default_factory=list)
    input_shapes: list[str] = field(default_factory=list)
    input_dtype: str | None = None
    example_inputs: str | None = None
    onnx_file: str | None = None
    no_onnx: bool = False
    onnx_exporter: str | None = None
    keep_onnx: str | None = None
    fmt: str = "text"
    output: str | None = None
    extra_reports: list[str] = field(default_factory=list)   # "FORMAT:FILE"
    fail_on: str | None = None
    select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    device: str | None = None
    seed: int | None = None
    allow_stochastic: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    baseline: str | None = None
    config_file: str | None = None
    debug: bool = False
    argv: list[str] = field(default_factory=list)
    # how targets run (evalguard.execution): worker processes, parallel jobs, shards
    isolate: bool | None = None
    jobs: int | None = None
    timeout: float | None = None
    memory_limit: str | None = None
    shard: str | None = None
    quiet: bool = False


def selected_rules(select: list[str] | None, ignore: list[str] | None) -> frozenset[str]:
    catalogue = load_catalogue()
    try:
        chosen = resolve_rule_selectors(select, catalogue) if select else set(catalogue)
        chosen -= resolve_rule_selectors(ignore or [], catalogue)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return frozenset(chosen)


def severity_overrides(config: FileConfig) -> dict[str, Severity]:
    catalogue = load_catalogue()
    overrides = {}
    for rule_id, level in config.severity.items():
        if rule_id.upper() not in catalogue:
            raise UsageError(f"{config.path}: [tool.evalguard.severity] names unknown rule {rule_id!r}")
        overrides[rule_id.upper()] = Severity.parse(level)
    return overrides


def build_options(request: CheckRequest, config: FileConfig) -> AuditOptions:
    from evalguard.loading.inputs import parse_dtype, parse_shape

    if request.onnx_file and request.no_onnx:
        raise UsageError("--onnx and --no-onnx cannot be used together")
    if not request.targets and not request.model_factory:
        raise UsageError("nothing to check: pass a TARGET (model file, checkpoint, .onnx, .py, folder) or --model")
    if request.onnx_file and not Path(request.onnx_file).is_file():
        raise UsageError(f"--onnx: no such file {request.onnx_file}")
    if request.example_inputs and not Path(request.example_inputs).is_file():
        raise UsageError(f"--example-inputs: no such file {request.example_inputs}")
    shapes = request.input_shapes or config.input_shape
    return AuditOptions(
        selected=selected_rules(request.select or config.select, request.ignore or config.ignore),
        seed=request.seed if request.seed is not None else (config.seed if config.seed is not None else 0),
        device=request.device or config.device or "cpu",
        input_shapes=tuple(parse_shape(s) for s in shapes),
        input_dtype=parse_dtype(request.input_dtype or config.input_dtype),
        example_inputs_file=request.example_inputs,
        model_factory=request.model_factory,
        trust_modules=tuple(dict.fromkeys([*config.trust_module, *request.trust_modules])),
        onnx_file=request.onnx_file,
        onnx_enabled=not request.no_onnx,
        keep_onnx=request.keep_onnx,
        onnx_exporter=request.onnx_exporter or config.onnx_exporter or "auto",
        allow_stochastic=tuple(request.allow_stochastic or config.allow_stochastic),
        tolerances=dict(config.tolerances),
        exclude=tuple(request.exclude or config.exclude),
        debug=request.debug,
    )


def parse_extra_reports(values: list[str], formats) -> list[tuple[str, str]]:
    """``--report html:report.html`` -> [("html", "report.html")], validated before the audit runs."""
    parsed = []
    for value in values:
        fmt, sep, path = value.partition(":")
        if not sep or not path or fmt not in formats:
            raise UsageError(f"--report expects FORMAT:FILE with FORMAT one of {', '.join(formats)}, got {value!r}")
        parsed.append((fmt, path))
    return parsed


def _write(path: str, text: str, flag: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {flag} {path}: {exc.strerror}") from None


def exit_code(report: Report, fail_on: Severity) -> int:
    if any(t.status == "error" for t in report.targets):
        return EXIT_ERROR
    return EXIT_FINDINGS if report.at_or_above(fail_on) else EXIT_OK


def execute(request: CheckRequest) -> int:
    from evalguard import engine
    from evalguard.reporters import FORMATS

    config = load_config(request.config_file)
    fail_on = Severity.parse(request.fail_on or config.fail_on or "error")
    extra_reports = parse_extra_reports(request.extra_reports, FORMATS)
    options = build_options(request, config)
    execution = build_execution(request.isolate, request.jobs, request.timeout, request.memory_limit,
                                request.shard, request.quiet)
    if execution.memory_limit and options.device == "cuda":
        raise UsageError("--memory-limit caps address space, which CUDA reserves by the tens of GiB; "
                         "it cannot be used with --device cuda")
    report = engine.audit(request.targets, options, severity_overrides(config),
                          metadata={"fail_on": str(fail_on), "command": "evalguard " + " ".join(request.argv)},
                          execution=execution)
    if request.baseline:
        report = apply_baseline(report, request.baseline)
    return publish(report, request.fmt, request.output, extra_reports, fail_on)


def publish(report: Report, fmt: str, output: str | None, extra_reports: list[tuple[str, str]],
            fail_on: Severity) -> int:
    """Render and write the report (and the ``--report`` extras), say which targets could not be
    audited, and return the exit code. ``evalguard check`` and ``evalguard merge`` end here."""
    from evalguard.reporters import render

    color = fmt == "text" and not output and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    text = render(report, fmt, color=color)
    for extra_fmt, path in extra_reports:
        _write(path, render(report, extra_fmt), "--report")
    if output:
        _write(output, text, "--output")
    else:
        click.echo(text, nl=False)
    if fmt == "text" and os.environ.get("GITHUB_ACTIONS") == "true":
        from evalguard.reporters.github import annotations

        click.echo(annotations(report), nl=False)
    for target in report.targets:
        if target.status == "error":
            click.echo(f"error: {target.detail}", err=True)
    return exit_code(report, fail_on)


def apply_baseline(report: Report, path: str) -> Report:
    """First run writes the baseline; later runs report only findings not in it."""
    from evalguard.reporters import baseline

    try:
        if not Path(path).exists():
            baseline.write_baseline(report, path)
            return report
        return baseline.filter_new(report, path)
    except (ValueError, OSError) as exc:
        raise UsageError(f"--baseline: {exc}") from None
