"""`evalguard check`: merge flags with [tool.evalguard], run the engine, render, pick the exit code."""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import click

from evalguard.catalogue import load_catalogue, resolve_rule_selectors
from evalguard.config import FileConfig, load_config
from evalguard.errors import UsageError
from evalguard.execution import build_execution
from evalguard.findings import Finding, Report, Severity
from evalguard.subject import AuditOptions

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


@dataclass
class CheckRequest:
    targets: list[str]
    model_factory: str | list[str] | None = None   # --model: MODULE:CALLABLE and/or GLOB=MODULE:CALLABLE (repeatable)
    trust_modules: list[str] = field(default_factory=list)
    input_shapes: list[str] = field(default_factory=list)
    input_dtype: str | None = None
    example_inputs: str | None = None
    onnx_file: str | None = None
    no_onnx: bool = False
    onnx_exporter: str | None = None
    keep_onnx: str | None = None
    backends: str | None = None                 # --backends LIST
    generate: int = 0                           # --generate N (0: off)
    fmt: str = "text"
    output: str | None = None
    extra_reports: list[str] = field(default_factory=list)   # "FORMAT:FILE"
    fail_on: str | None = None
    select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    extend_select: list[str] = field(default_factory=list)
    extend_ignore: list[str] = field(default_factory=list)
    device: str | None = None
    seed: int | None = None
    allow_stochastic: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    min_confidence: str | None = None            # --min-confidence high|medium
    baseline: str | None = None
    config_file: str | None = None
    debug: bool = False
    argv: list[str] = field(default_factory=list)
    # output, ruff-style (issue 19)
    exit_zero: bool = False
    statistics: bool = False
    quiet: bool = False
    fix: bool = False
    unsafe_fixes: bool = False
    diff: bool = False
    add_noqa: bool = False
    #: ``check -``: (temporary copy, the --stdin-filename it stands for, the text)
    stdin: tuple[str, str, str] | None = None
    #: path audited -> the name the report shows (stdin's copy, an ``hf:`` id's cached snapshot)
    aliases: dict[str, str] = field(default_factory=dict)
    # how targets run (evalguard.execution): worker processes, parallel jobs, shards
    isolate: bool | None = None
    jobs: int | None = None
    timeout: float | None = None
    memory_limit: str | None = None
    shard: str | None = None
    executor: str = "local"
    ray_address: str | None = None
    retries: int | None = None


@dataclass(frozen=True)
class Selection:
    """One layer of rule selection (the config file, then the command line), as in ruff:
    ``select`` replaces what earlier layers chose, ``extend_select`` adds to it, ``ignore`` and
    ``extend_ignore`` remove from it."""

    select: list[str] | None = None
    extend_select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    extend_ignore: list[str] = field(default_factory=list)
    origin: str = "command line"


def layered_selection(*layers: Selection) -> frozenset[str]:
    catalogue = load_catalogue()
    chosen = set(catalogue)
    for layer in layers:
        try:
            if layer.select:
                chosen = resolve_rule_selectors(layer.select, catalogue)
            chosen |= resolve_rule_selectors(layer.extend_select, catalogue)
            chosen -= resolve_rule_selectors([*layer.ignore, *layer.extend_ignore], catalogue)
        except ValueError as exc:
            prefix = "" if layer.origin == "command line" else f"{layer.origin}: [tool.evalguard] "
            raise UsageError(prefix + str(exc)) from None
    return frozenset(chosen)


def selected_rules(select: list[str] | None, ignore: list[str] | None) -> frozenset[str]:
    return layered_selection(Selection(select=select or None, ignore=list(ignore or [])))


def request_selection(request: CheckRequest, config: FileConfig) -> frozenset[str]:
    origin = str(config.path) if config.path else "config"
    return layered_selection(
        Selection(config.select, config.extend_select, config.ignore or [], config.extend_ignore, origin),
        Selection(request.select or None, request.extend_select, request.ignore, request.extend_ignore))


def severity_overrides(config: FileConfig) -> dict[str, Severity]:
    from evalguard.engine import parse_severities

    try:
        return parse_severities(config.severity)
    except ValueError as exc:
        if "unknown rule" not in str(exc):
            raise
        raise UsageError(f"{config.path}: [tool.evalguard.severity] {exc}") from None


def build_options(request: CheckRequest, config: FileConfig) -> AuditOptions:
    from evalguard.checks.onnx import parse_backends
    from evalguard.loading.factory import check_factory_spec
    from evalguard.loading.inputs import check_allocatable, parse_dtype, parse_shape

    if request.onnx_file and request.no_onnx:
        raise UsageError("--onnx and --no-onnx cannot be used together")
    plain, model_map = model_architectures(request, config)
    if not request.targets and not plain:
        raise UsageError("nothing to check: pass a TARGET (model file, checkpoint, .onnx, .py, folder) or --model")
    if request.onnx_file and not Path(request.onnx_file).is_file():
        raise UsageError(f"--onnx: no such file {request.onnx_file}")
    if request.example_inputs and not Path(request.example_inputs).is_file():
        raise UsageError(f"--example-inputs: no such file {request.example_inputs}")
    trust_modules = tuple(dict.fromkeys([*config.trust_module, *request.trust_modules]))
    if trust_modules:
        from evalguard.loading.allowlist import check_trust_modules
        from evalguard.loading.factory import import_trusted_modules

        import_trusted_modules(check_trust_modules(trust_modules))
    shapes = request.input_shapes or config.input_shape
    try:
        backends = parse_backends(request.backends or config.backends)
    except ValueError as exc:
        raise UsageError(f"--backends: {exc}") from None
    input_shapes = _from_config(config, "input-shape", not request.input_shapes,
                                lambda: tuple(parse_shape(s) for s in shapes))
    input_dtype = _from_config(config, "input-dtype", not request.input_dtype,
                               lambda: parse_dtype(request.input_dtype or config.input_dtype))
    check_allocatable(input_shapes, input_dtype)
    for spec in {plain, *(spec for _glob, spec in model_map)} - {None}:
        check_factory_spec(spec)      # each architecture named, before any audit
    return AuditOptions(
        selected=request_selection(request, config),
        seed=request.seed if request.seed is not None else (config.seed if config.seed is not None else 0),
        device=request.device or config.device or "cpu",
        input_shapes=input_shapes,
        input_dtype=input_dtype,
        example_inputs_file=request.example_inputs,
        model_factory=plain,
        model_map=model_map,
        trust_modules=trust_modules,
        onnx_file=request.onnx_file,
        onnx_enabled=not request.no_onnx,
        keep_onnx=request.keep_onnx,
        onnx_exporter=request.onnx_exporter or config.onnx_exporter or "auto",
        backends=backends,
        generate=request.generate or 0,
        allow_stochastic=tuple(request.allow_stochastic or config.allow_stochastic),
        tolerances=dict(config.tolerances),
        exclude=tuple(request.exclude or config.exclude),
        debug=request.debug,
        min_confidence=request.min_confidence or "medium",
    )


def model_architectures(request: CheckRequest, config: FileConfig) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """The plain ``--model`` and the GLOB=SPEC mappings (``evalguard.planning``): the command
    line's first (globs relative to the current folder), then the config's (relative to its file)."""
    from evalguard.planning import parse_model_specs

    given = request.model_factory
    values = [given] if isinstance(given, str) else list(given or [])
    plain, mapping = parse_model_specs(values, Path.cwd())
    if config.model:
        origin = f"{config.path}: [tool.evalguard] model" if config.path else "[tool.evalguard] model"
        base = config.path.parent if config.path else Path.cwd()
        config_plain, config_mapping = parse_model_specs(config.model, base, origin)
        plain = plain or config_plain
        mapping += config_mapping
    return plain, mapping


def _from_config(config: FileConfig, key: str, from_file: bool, parse):
    """``parse()``; a bad value that came from the config file is reported under its key there."""
    try:
        return parse()
    except UsageError as exc:
        if not from_file or config.path is None:
            raise
        raise UsageError(f"{config.path}: [tool.evalguard] {key}: {str(exc).replace('--' + key + ' ', '')}") from None


def parse_extra_reports(values: list[str], formats) -> list[tuple[str, str]]:
    """``--report html:report.html`` -> [("html", "report.html")], validated before the audit runs."""
    parsed = []
    for value in values:
        fmt, sep, path = value.partition(":")
        if not sep or not path or fmt not in formats:
            raise UsageError(f"--report expects FORMAT:FILE with FORMAT one of {', '.join(formats)}, got {value!r}")
        parsed.append((fmt, path))
    return parsed


def check_writable(path: str, flag: str) -> None:
    """Fail before any target is loaded when a file could not be written afterwards: a bad
    path must never cost an audit, nor drop a report of targets already audited."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UsageError(f"{flag} {path}: is a directory")
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: no such directory {folder}")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"{flag} {path}: not writable")


def _write(path: str, text: str, flag: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {flag} {path}: {exc.strerror}") from None


def exit_code(report: Report, fail_on: Severity | dict[str, Severity], exit_zero: bool = False) -> int:
    """2 when a target could not be audited (an error, or a file the safe loader refused); else 1
    when a finding is at or above its target's ``--fail-on`` (``fail_on`` maps a path to its
    threshold when configs differ), unless ``--exit-zero``. An internal crash (EG900) left rules
    unchecked, so the run exits 2 whatever was selected."""
    if any(t.status in ("error", "refused") for t in report.targets) or _internal_errors(report):
        return EXIT_ERROR
    if exit_zero:
        return EXIT_OK
    if isinstance(fail_on, Severity):
        return EXIT_FINDINGS if report.at_or_above(fail_on) else EXIT_OK
    lowest = min(fail_on.values(), default=Severity.ERROR)
    failing = any(f.severity is not None and f.severity >= fail_on.get(f.location.path, lowest)
                  for f in report.findings)
    return EXIT_FINDINGS if failing else EXIT_OK


def _internal_errors(report: Report) -> list:
    return [f for f in report.findings if f.rule == "EG900"]


def _use_colour(request: CheckRequest) -> bool:
    return (request.fmt == "text" and not request.output and sys.stdout.isatty()
            and "NO_COLOR" not in os.environ)


@dataclass
class PlannedRun:
    """Targets that share one configuration file, with the options it gives them."""

    config: FileConfig
    targets: list[str]
    options: AuditOptions
    overrides: dict[str, Severity]
    fail_on: Severity


def group_by_config(request: CheckRequest, pairs: dict[str, str] | None = None) -> list[tuple[FileConfig, list[str]]]:
    """Each target with its configuration: ``--config FILE`` for all, else the nearest
    pyproject.toml with a [tool.evalguard] table, walking up from the target (as ruff does).
    ``pairs`` receives the ``x.pt`` -> ``x.onnx`` pairs found by walking folders."""
    from evalguard.config import find_pyproject, start_folder

    if request.config_file or not request.targets:
        return [(load_config(request.config_file), list(request.targets))]
    groups: dict[Path | None, list[str]] = {}
    shown = {request.stdin[0]: request.stdin[1]} if request.stdin else {}
    for target in _walked(request, {} if pairs is None else pairs):
        # an hf: id's cached snapshot takes the config of the project it is audited from
        start = Path.cwd() if target in request.aliases else start_folder(shown.get(target, target))
        groups.setdefault(find_pyproject(start), []).append(target)
    return [(load_config(str(path), searched=True) if path else FileConfig(), targets)
            for path, targets in groups.items()]


#: A save_pretrained folder's weights: one file, or the shards of a sharded checkpoint.
_HF_WEIGHTS = re.compile(r"^(model|pytorch_model)(-\d{5}-of-\d{5})?\.(safetensors|bin)$")


def hf_folder_of(target: str) -> str | None:
    """The Hugging Face folder a weights file belongs to (``hf/model.safetensors`` -> ``hf``):
    alone it is a bare state_dict; with its folder, config.json gives the architecture."""
    from evalguard.loading.discover import is_model_folder

    path = Path(target)
    if not path.is_file() or not _HF_WEIGHTS.match(path.name) or not (path.parent / "config.json").is_file():
        return None
    return str(path.parent) if is_model_folder(path.parent) else None


def _walked(request: CheckRequest, pairs: dict[str, str]) -> list[str]:
    """The targets with each plain folder replaced by what walking it finds (excluding with
    --exclude, else the folder's own config), so each file found gets its nearest config; an
    ``x.onnx`` found beside one ``x.pt`` is folded into it (``pairs``, ``evalguard.planning``)."""
    from evalguard.config import find_pyproject, start_folder
    from evalguard.loading.discover import expand_targets, is_model_folder
    from evalguard.planning import pair_onnx

    walked = []
    for target in request.targets:
        folder = None if request.model_factory else hf_folder_of(target)
        if folder is not None:
            if folder not in walked:
                walked.append(folder)      # its weights file: the folder is the model (pre-commit passes files)
            continue
        if not Path(target).is_dir() or is_model_folder(Path(target)):
            walked.append(target)
            continue
        config_path = find_pyproject(start_folder(target))
        exclude = request.exclude or (load_config(str(config_path)).exclude if config_path else [])
        found, found_pairs = pair_onnx(expand_targets([target], exclude))
        walked.extend(found)
        pairs.update(found_pairs)
    return walked


def require_torch(request: CheckRequest, targets: list[str]) -> None:
    """Model targets need torch (the ``models`` extra); Python sources do not, so a
    torch-free install (the pre-commit source hook) says what to install instead of failing later."""
    import importlib.util

    from evalguard.loading.discover import is_model_folder

    models = [t for t in targets if not t.endswith(".py") and (not Path(t).is_dir() or is_model_folder(Path(t)))]
    if (models or request.model_factory) and importlib.util.find_spec("torch") is None:
        given = request.model_factory
        what = models[0] if models else f"--model {given if isinstance(given, str) else ' '.join(given)}"
        raise UsageError(f"{what}: auditing models needs torch, which is not installed: pip install torch "
                         "--index-url https://download.pytorch.org/whl/cpu && pip install 'evalguard[models]' "
                         "(Python sources are checked without it)")


def plan_runs(request: CheckRequest) -> list[PlannedRun]:
    """Every configuration is read and validated before the first target is audited."""
    runs = []
    pairs: dict[str, str] = {}
    groups = group_by_config(request, pairs)
    require_torch(request, [t for _, targets in groups for t in targets])
    for config, targets in groups:
        fail_on = Severity.parse(request.fail_on or config.fail_on or "error")
        options = build_options(request, config)
        paired = tuple((t, pairs[t]) for t in targets if t in pairs)
        runs.append(PlannedRun(config, targets, replace(options, onnx_pairs=paired) if paired else options,
                               severity_overrides(config), fail_on))
    return runs


def merge_reports(reports: list[Report]) -> Report:
    """One report from the runs of several configurations (targets in command-line order)."""
    if len(reports) == 1:
        return reports[0]
    metadata = dict(reports[0].metadata)
    metadata["selected"] = sorted({rule for r in reports for rule in r.metadata.get("selected", ())})
    metadata["fail_on"] = str(min(Severity.parse(r.metadata.get("fail_on", "error")) for r in reports))
    metadata["configs"] = [path for r in reports for path in r.metadata.get("configs", ())]
    findings = sorted((f for r in reports for f in r.findings), key=Finding.sort_key)
    return Report(targets=tuple(t for r in reports for t in r.targets), findings=tuple(findings),
                  metadata=metadata)


def audit_request(request: CheckRequest) -> tuple[Report, Severity | dict[str, Severity]]:
    """Run the engine once per configuration; returns the merged report and the fail-on threshold
    (a single one, or one per target path when the configurations disagree)."""
    from evalguard import orchestrator

    runs = plan_runs(request)
    execution = build_execution(request.isolate, request.jobs, request.timeout, request.memory_limit,
                                request.shard, request.quiet, executor=request.executor,
                                ray_address=request.ray_address, retries=request.retries)
    if execution.memory_limit and any(run.options.device == "cuda" for run in runs):
        raise UsageError("--memory-limit caps address space, which CUDA reserves by the tens of GiB; "
                         "it cannot be used with --device cuda")
    reports = []
    for run in runs:
        metadata = {"fail_on": str(run.fail_on), "command": "evalguard " + " ".join(request.argv)}
        metadata["configs"] = [str(run.config.path)] if run.config.path else []
        reports.append(orchestrator.audit(run.targets, run.options, run.overrides, metadata=metadata,
                                    execution=execution))
    if len({run.fail_on for run in runs}) == 1:
        return merge_reports(reports), runs[0].fail_on
    thresholds = {}
    for run, report in zip(runs, reports):
        thresholds.update({t.path: run.fail_on for t in report.targets})
        thresholds.update({f.location.path: run.fail_on for f in report.findings})
    return merge_reports(reports), thresholds


def resolve_hf_targets(request: CheckRequest) -> None:
    """``hf:org/name[@revision]`` targets become their cached snapshot folders (shown by their id)."""
    from evalguard.hf_ids import is_hf_id, resolve

    for index, target in enumerate(request.targets):
        if is_hf_id(target):
            snapshot = resolve(target)
            request.aliases[snapshot] = target
            request.targets[index] = snapshot


def execute(request: CheckRequest) -> int:
    from evalguard.reporters import FORMATS, render

    extra_reports = parse_extra_reports(request.extra_reports, FORMATS)
    for flag, path in ([("--output", request.output)] + [("--report", p) for _, p in extra_reports]
                       + [("--baseline", request.baseline)]):
        if path:
            check_writable(path, flag)
    if request.statistics and request.fmt != "text" and not request.output:
        raise UsageError(f"--statistics replaces the text report; with --format {request.fmt} "
                         "also pass --output FILE")
    resolve_hf_targets(request)
    report, fail_on = audit_request(request)
    aliases = {**request.aliases, **({request.stdin[0]: request.stdin[1]} if request.stdin else {})}
    if aliases:
        report = renamed(report, aliases)
        if isinstance(fail_on, dict):
            fail_on = {aliases.get(key, key): level for key, level in fail_on.items()}
    if request.diff:
        return show_fixes(report, request)
    if request.add_noqa:
        return add_noqa_comments(report, request)
    if request.fix and apply_fixes(report, request):
        report, fail_on = audit_request(request)      # report what is left, as ruff does
    if request.baseline:
        report = apply_baseline(report, request.baseline, quiet=request.quiet)
    for fmt, path in extra_reports:
        _write(path, render(report, fmt), "--report")
    if request.output:
        _write(request.output, render(report, request.fmt), "--output")
    if request.fmt == "text" or request.statistics:
        click.echo(text_output(report, request), nl=False)
    elif not request.output:
        click.echo(render(report, request.fmt), nl=False)
    if request.fmt == "text" and os.environ.get("GITHUB_ACTIONS") == "true":
        from evalguard.reporters.github import annotations

        click.echo(annotations(report), nl=False)
    return finish(report, fail_on, request.exit_zero)


def renamed(report: Report, aliases: dict[str, str]) -> Report:
    """The report with each audited path shown as the user named it (stdin's temporary copy as
    ``--stdin-filename``, a cached snapshot folder as its ``hf:`` id)."""
    from dataclasses import replace

    targets = tuple(replace(t, path=aliases[t.path]) if t.path in aliases else t for t in report.targets)
    findings = tuple(replace(f, location=replace(f.location, path=aliases[f.location.path]))
                     if f.location.path in aliases else f for f in report.findings)
    return Report(targets=targets, findings=findings, metadata=report.metadata)


def finish(report: Report, fail_on, exit_zero: bool = False) -> int:
    """One ``error: PATH: reason`` line per target that could not be audited; the exit code."""
    failed = set()
    for target in report.targets:
        if target.status in ("error", "refused"):
            failed.add(target.path)
            click.echo(error_line(target.path, target.detail or "refused"), err=True)
    for crash in (f for f in _internal_errors(report) if f.location.path not in failed):
        click.echo(error_line(crash.location.path, f"{crash.message} (EG900)"), err=True)
    return exit_code(report, fail_on, exit_zero)


def publish(report: Report, fmt: str, output: str | None, extra_reports: list[tuple[str, str]],
            fail_on: Severity, quiet: bool = False) -> int:
    """Render and write a report that already exists (``evalguard merge``): the same files,
    error lines and exit code as ``evalguard check`` (``quiet``: the text report's findings only)."""
    from evalguard.reporters import render
    from evalguard.reporters import text as text_report

    color = fmt == "text" and not output and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    if fmt == "text" and quiet:
        text = text_report.render(report, color=color, quiet=True)
    else:
        text = render(report, fmt, color=color)
    for extra_fmt, path in extra_reports:
        _write(path, render(report, extra_fmt), "--report")
    if output:
        _write(output, text, "--output")
    else:
        click.echo(text, nl=False)
    return finish(report, fail_on)


def error_line(path: str, detail: str) -> str:
    """``error: PATH: reason``, one line, whether or not the reason already starts with the path."""
    for sep in (": ", " "):
        if detail.startswith(path + sep):
            detail = detail[len(path) + len(sep):]
            break
    return f"error: {path}: {' '.join(detail.split())}"


def text_output(report: Report, request: CheckRequest) -> str:
    """What goes to the terminal: the findings (or, with --statistics, a count per rule)."""
    from evalguard.reporters import guarded, text

    if request.output and request.fmt == "text" and not request.statistics:
        return ""
    colour = _use_colour(request)
    if request.statistics:
        return guarded("text reporter", lambda: text.statistics(report, quiet=request.quiet))
    sources = {request.stdin[1]: request.stdin[2]} if request.stdin else None
    return guarded("text reporter", lambda: text.render(report, color=colour, quiet=request.quiet, sources=sources))


def _fix_note(fixes, unsafe: bool, verb: str) -> str:
    applied = sum(len(f.applied) for f in fixes)
    files = sum(1 for f in fixes if f.changed)
    note = f"{verb} {_count(applied, 'finding')} in {_count(files, 'file')}"
    hidden = sum(len(f.unsafe_skipped) for f in fixes)
    if hidden and not unsafe:
        note += f"; {hidden} more with --unsafe-fixes"
    return note


def show_fixes(report: Report, request: CheckRequest) -> int:
    """``--diff``: print the patch ``--fix`` would apply; exit 1 when there is one (as ruff)."""
    from evalguard.fixes import fix_findings

    fixes = fix_findings(report.findings, unsafe=request.unsafe_fixes)
    click.echo("".join(f.diff() for f in fixes if f.changed), nl=False)
    if not request.quiet:
        click.echo(_fix_note(fixes, request.unsafe_fixes, "would fix"), err=True)
    return EXIT_FINDINGS if any(f.changed for f in fixes) else EXIT_OK


def add_noqa_comments(report: Report, request: CheckRequest) -> int:
    """``--add-noqa``: mark every source finding's line with ``# evalguard: ignore[RULE]``; exit 0
    (as ruff), or 2 when a target could not be audited."""
    from evalguard.noqa import add_noqa, source_findings

    added, files, skipped = 0, 0, []
    for path, findings in source_findings(report.findings).items():
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--add-noqa: cannot read {path}: {exc}") from None
        edit = add_noqa(path, text, findings)
        if edit.after != text:
            _write(path, edit.after, "--add-noqa")
            files += 1
        added += edit.added
        skipped += [f"{path}:{line}" for line in edit.skipped]
    if not request.quiet:
        note = f"added {_count(added, 'suppression')} in {_count(files, 'file')}"
        if skipped:
            note += f"; {len(skipped)} line(s) cannot end with a comment: {', '.join(skipped[:5])}"
        click.echo(note, err=True)
    return EXIT_ERROR if any(t.status in ("error", "refused") for t in report.targets) else EXIT_OK


def apply_fixes(report: Report, request: CheckRequest) -> bool:
    """``--fix``: rewrite the files; True when any changed (the caller audits them again)."""
    from evalguard.fixes import fix_findings

    fixes = fix_findings(report.findings, unsafe=request.unsafe_fixes)
    for fix in fixes:
        if fix.changed:
            _write(fix.path, fix.after, "--fix")
    if not request.quiet:
        click.echo(_fix_note(fixes, request.unsafe_fixes, "fixed"), err=True)
    return any(f.changed for f in fixes)


def apply_baseline(report: Report, path: str, quiet: bool = False) -> Report:
    """First run writes the baseline; later runs report only findings not in it. Says which on stderr."""
    from evalguard.reporters import baseline

    try:
        if not Path(path).exists():
            count = baseline.write_baseline(report, path)
            if not quiet:
                click.echo(f"baseline written: {_count(count, 'finding')} accepted in {path}", err=True)
            return report
        result = baseline.apply_baseline(report, baseline.read_baseline(path), path)
    except (ValueError, OSError) as exc:
        raise UsageError(f"--baseline: {exc}") from None
    if not quiet:
        note = f"{_count(result.suppressed, 'finding')} hidden by the baseline {path}"
        if result.fixed:
            note += f"; {_count(result.fixed, 'accepted finding')} no longer found (rewrite the baseline to drop them)"
        click.echo(note, err=True)
    return result.report


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
