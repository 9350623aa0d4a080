"""Command line: parsing and validation only. The checks live in evalguard.checks.

Nothing here imports torch at module level, so `evalguard --help`, `evalguard rules` and
`evalguard explain` stay fast.
"""
from __future__ import annotations

import os
import sys

import click

from evalguard import __version__
from evalguard.errors import EvalguardError, UsageError
from evalguard.reporters import FORMATS
from evalguard.run_check import EXIT_ERROR, EXIT_OK


def _split_ids(values) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _execution_options(command):
    """Flags for how targets run (worker processes, parallel jobs, shards); they reach
    ``CheckRequest`` under the same names."""
    options = [
        click.option("--isolate/--no-isolate", "isolate", default=None,
                     help="Audit each model target in its own worker process "
                          "(default: when there is more than one, or with --timeout/--memory-limit)."),
        click.option("--jobs", "-j", "jobs", type=int, default=None, metavar="N",
                     help="Model targets audited at once, each in a worker (default 1); cores are shared out. "
                          "Also the processes checking .py files (default: the cores, for 40 files or more)."),
        click.option("--timeout", "timeout", type=float, default=None, metavar="SECONDS",
                     help="Seconds one model target's audit may take (worker start-up not counted); "
                          "past it the worker is killed and the target is an error (default: 90 s plus "
                          "60 s per 100 MiB of the target's files, at most 900 s)."),
        click.option("--memory-limit", "memory_limit", metavar="SIZE",
                     help="Memory each worker may add to its start-up size (address space, e.g. 4G); "
                          "allocations past it fail that target. CPU only."),
        click.option("--shard", "shard", metavar="K/N",
                     help="Audit slice K of N of the targets (CI matrices); combine with `evalguard merge`."),
        click.option("--executor", "executor", type=click.Choice(["local", "ray"]), default="local",
                     show_default=True,
                     help="Where model targets run: worker processes here, or Ray tasks (pip install 'evalguard[ray]')."),
        click.option("--ray-address", "ray_address", metavar="local|auto|ADDR",
                     help="With --executor ray: local (default) starts a private Ray instance for the run, never "
                          "joining one already running; auto joins the cluster running on this machine; "
                          "HOST:PORT or ray://HOST:PORT joins that cluster."),
        click.option("--retries", "retries", type=int, default=None, metavar="N",
                     help="With --executor ray: audit a target again up to N times when its Ray actor dies "
                          "(a lost node); default 0. A retried target says so in the report."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="evalguard")
def cli() -> None:
    """Audit PyTorch models for bugs that make inference silently wrong."""


@cli.command()
@click.argument("targets", nargs=-1, type=click.Path())
@click.option("--model", "model_factory", multiple=True, metavar="[GLOB=]MODULE:CALLABLE",
              help="Factory returning an nn.Module: the architecture of state_dict/checkpoint targets (never of "
                   "HF folders, full pickles or ONNX), or the model to audit. GLOB=MODULE:CALLABLE (repeatable, "
                   "first match wins) gives the targets matching GLOB their own architecture.")
@click.option("--trust-module", multiple=True, metavar="NAME",
              help="Package whose classes may be rebuilt from a full-module pickle (repeatable).")
@click.option("--input-shape", multiple=True, metavar="4x3x224x224", help="Shape of one positional input (repeatable).")
@click.option("--input-dtype", metavar="DTYPE", help="dtype of generated inputs (float32, int64, bool, ...).")
@click.option("--example-inputs", type=click.Path(), metavar="FILE",
              help="Tensor, tuple/list (positional) or dict (keyword) saved with torch.save.")
@click.option("--onnx", "onnx_file", type=click.Path(), metavar="FILE", help="Compare this ONNX file with the model.")
@click.option("--no-onnx", is_flag=True, help="Skip the ONNX export and parity checks.")
@click.option("--onnx-exporter", type=click.Choice(["auto", "torchscript", "dynamo"]), default=None,
              help="Exporter tried first (auto: torchscript, faster; dynamo: less peak memory); the other is the fallback.")
@click.option("--keep-onnx", type=click.Path(), metavar="DIR", help="Keep the exported ONNX file in DIR.")
@click.option("--backends", metavar="LIST", default=None,
              help="Deployment backends compared with eager PyTorch, comma-separated: onnxruntime (default), "
                   "ort-optimized, torch-compile, aoti, torchscript, openvino, openvino-onnx (evalguard[openvino]), "
                   "ort-int8, executorch (evalguard[executorch]).")
@click.option("--generate", "generate", type=click.IntRange(min=0), default=0, metavar="N",
              help="Greedy-decode N tokens per prompt (transformers LMs): eager vs ONNX Runtime with its KV cache, "
                   "cache vs no cache, padded batch vs one prompt (EG408-EG410; default 0: off).")
@click.option("--format", "--output-format", "fmt", type=click.Choice(list(FORMATS)), default="text",
              show_default=True,
              help="Report format; github prints GitHub Actions annotations (workflow commands), "
                   "gitlab a GitLab Code Quality report.")
@click.option("--output", "-o", type=click.Path(), metavar="FILE", help="Write the report here (default stdout).")
@click.option("--report", "extra_reports", multiple=True, metavar="FORMAT:FILE",
              help="Also write this format to FILE from the same run (repeatable), e.g. html:report.html.")
@click.option("--fail-on", type=click.Choice(["info", "warning", "error"]), default=None,
              help="Lowest severity that makes the exit code 1 (default error).")
@click.option("--select", multiple=True, metavar="RULES",
              help="Rules to run, replacing the selection (the config's too): ids, prefixes or names, comma-separated.")
@click.option("--extend-select", multiple=True, metavar="RULES", help="Rules to add to the selection.")
@click.option("--ignore", multiple=True, metavar="RULES",
              help="Rules to remove from the selection, on top of the config's ignore.")
@click.option("--extend-ignore", multiple=True, metavar="RULES", help="Same as --ignore (as in ruff).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="cpu (default) or cuda.")
@click.option("--seed", type=int, default=None, help="Seed for generated inputs and forward passes (default 0).")
@click.option("--allow-stochastic", multiple=True, metavar="GLOB",
              help="Module-name glob whose randomness is intended (MC dropout): reported as info.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip matching files when walking folders.")
@click.option("--min-confidence", type=click.Choice(["high", "medium"]), default=None,
              help="Source rules: report only findings at least this sure (default medium: both).")
@click.option("--baseline", type=click.Path(), metavar="FILE",
              help="Report only findings not in FILE; the file is written when it does not exist.")
@click.option("--config", "config_file", type=click.Path(), metavar="FILE",
              help="Read settings from FILE instead of each target's nearest pyproject.toml.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("--exit-zero", is_flag=True,
              help="Exit 0 even when findings are at or above --fail-on (2 still means a target was not audited).")
@click.option("--statistics", is_flag=True, help="Print how many findings each rule raised instead of the findings.")
@click.option("--quiet", "-q", is_flag=True, help="Print the findings only: no summary, no notes, no progress line.")
@click.option("--fix", is_flag=True, help="Rewrite source files to fix EG105, EG106, EG301, EG903 where a safe fix exists.")
@click.option("--unsafe-fixes", is_flag=True, help="With --fix/--diff, also apply fixes that may change behaviour.")
@click.option("--diff", is_flag=True, help="Print the patch --fix would apply, write nothing (exit 1 if any).")
@click.option("--stdin-filename", metavar="PATH",
              help="With TARGET '-': the path of the Python source read from stdin (its config, its name in messages).")
@click.option("--add-noqa", is_flag=True,
              help="Add '# evalguard: ignore[RULE]' to the line of each source finding (adopting evalguard), then exit 0.")
@_execution_options
def check(targets, model_factory, trust_module, input_shape, input_dtype, example_inputs, onnx_file, no_onnx,
          onnx_exporter, keep_onnx, backends, generate, fmt, output, extra_reports, fail_on, select, extend_select, ignore, extend_ignore,
          device, seed, allow_stochastic, exclude, min_confidence, baseline, config_file, debug, exit_zero, statistics,
          quiet, fix, unsafe_fixes, diff, add_noqa, stdin_filename, **execution_flags) -> int:
    """Audit model files, checkpoints, ONNX files and Python sources ('-': a Python source on stdin)."""
    from evalguard.run_check import CheckRequest, execute

    request = CheckRequest(
        targets=list(targets), model_factory=list(model_factory), trust_modules=list(trust_module),
        input_shapes=list(input_shape), input_dtype=input_dtype, example_inputs=example_inputs,
        onnx_file=onnx_file, no_onnx=no_onnx, onnx_exporter=onnx_exporter, keep_onnx=keep_onnx, backends=backends, generate=generate, fmt=fmt, output=output,
        extra_reports=list(extra_reports), fail_on=fail_on,
        select=_split_ids(select), ignore=_split_ids(ignore), device=device, seed=seed,
        extend_select=_split_ids(extend_select), extend_ignore=_split_ids(extend_ignore),
        allow_stochastic=list(allow_stochastic), exclude=list(exclude), min_confidence=min_confidence,
        baseline=baseline,
        config_file=config_file, debug=debug, argv=list(sys.argv[1:]), **execution_flags,
        exit_zero=exit_zero, statistics=statistics, quiet=quiet,
        fix=fix, unsafe_fixes=unsafe_fixes, diff=diff, add_noqa=add_noqa,
    )
    if "-" in targets or stdin_filename:
        return _execute_stdin(request, stdin_filename or "stdin.py")
    return execute(request)


def _execute_stdin(request, name: str) -> int:
    """``evalguard check - --stdin-filename train.py``: the source on stdin is checked as if it
    were that file (its nearest config, its name in every message), for editors. The text is
    written to a private temporary folder, never next to the user's file."""
    import tempfile
    from pathlib import Path

    from evalguard.run_check import execute

    if request.targets != ["-"]:
        raise UsageError("--stdin-filename needs the single TARGET '-' (the source is read from stdin)")
    if not name.endswith(".py"):
        raise UsageError(f"--stdin-filename {name}: only Python sources can be read from stdin")
    for flag, used in (("--fix", request.fix), ("--diff", request.diff), ("--add-noqa", request.add_noqa),
                       ("--model", request.model_factory)):
        if used:
            raise UsageError(f"{flag} cannot be used with stdin ('-')")
    text = click.get_text_stream("stdin").read()
    with tempfile.TemporaryDirectory(prefix="evalguard-stdin-") as folder:
        copy = Path(folder) / Path(name).name
        copy.write_text(text, encoding="utf-8")
        request.targets = [str(copy)]
        request.stdin = (str(copy), name, text)
        return execute(request)


@cli.command()
@click.argument("reports", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="text", show_default=True)
@click.option("--output", "-o", type=click.Path(), metavar="FILE", help="Write the report here (default stdout).")
@click.option("--report", "extra_reports", multiple=True, metavar="FORMAT:FILE",
              help="Also write this format to FILE (repeatable), e.g. html:report.html.")
@click.option("--fail-on", type=click.Choice(["info", "warning", "error"]), default=None,
              help="Lowest severity that makes the exit code 1 (default: the one the shards ran with).")
@click.option("--quiet", "-q", is_flag=True, help="Print the findings only, as `check -q` does: no summary.")
def merge(reports, fmt, output, extra_reports, fail_on, quiet) -> int:
    """Combine JSON reports of `check --shard K/N` runs into one report."""
    from evalguard.merge import run_merge

    return run_merge(list(reports), fmt, output, list(extra_reports), fail_on, quiet=quiet)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def rules(fmt) -> int:
    """List every rule: id, name, severity, status."""
    import json

    from evalguard.catalogue import load_catalogue

    catalogue = load_catalogue()
    if fmt == "json":
        click.echo(json.dumps([{"id": r.id, "name": r.name, "severity": str(r.severity), "status": r.status,
                                "summary": r.summary} for r in catalogue.values()], indent=2))
        return EXIT_OK
    width = max(len(r.name) for r in catalogue.values())
    click.echo(f"{'ID':<6} {'NAME':<{width}} {'SEVERITY':<8} {'STATUS':<11} SUMMARY")
    for rule in catalogue.values():
        summary = rule.summary if len(rule.summary) <= 90 else rule.summary[:87] + "..."
        click.echo(f"{rule.id:<6} {rule.name:<{width}} {str(rule.severity):<8} {rule.status:<11} {summary}")
    return EXIT_OK


@cli.command()
@click.argument("rule_id")
def explain(rule_id) -> int:
    """Show one rule's full documentation."""
    from evalguard.catalogue import load_catalogue
    from evalguard.explain import render_rule

    catalogue = load_catalogue()
    rule = catalogue.get(rule_id.strip().upper())
    if rule is None:
        by_name = {r.name: r for r in catalogue.values()}
        rule = by_name.get(rule_id.strip())
    if rule is None:
        raise UsageError(f"unknown rule {rule_id!r} (see `evalguard rules`)")
    click.echo(render_rule(rule))
    return EXIT_OK


class Terminated(KeyboardInterrupt):
    """SIGTERM: unwinds like Ctrl-C, so the run kills the workers it started before it exits."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors with exit code 2, tracebacks only with --debug."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("EVALGUARD_DEBUG") == "1"
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = cli.main(args=args, prog_name="evalguard", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort as exc:   # click turns KeyboardInterrupt (so our Terminated) into Abort
        if isinstance(exc.__cause__, Terminated) or isinstance(exc.__context__, Terminated):
            click.echo("error: terminated (SIGTERM); the workers this run started were killed", err=True)
            code = 143
        else:
            click.echo("error: aborted", err=True)
            code = EXIT_ERROR
    except click.ClickException as exc:
        if debug:
            raise
        click.echo(f"error: {exc.format_message()}", err=True)
        code = EXIT_ERROR
    except EvalguardError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        code = EXIT_ERROR
    except Terminated:
        click.echo("error: terminated (SIGTERM); the workers this run started were killed", err=True)
        code = 143
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        code = 130
    except Exception as exc:  # noqa: BLE001 - the contract is one line and exit 2, never a traceback
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        click.echo(f"error: internal error: {type(exc).__name__}: {first} (run with --debug for the traceback)",
                   err=True)
        code = EXIT_ERROR
    sys.exit(code if isinstance(code, int) else EXIT_OK)
