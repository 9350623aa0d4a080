"""The run: plan the targets (sources, shards, worker processes or Ray), audit each one with
the engine (``evalguard.engine.audit_one``: one target) and merge the results into one Report.

The engine never imports this module or ``evalguard.execution``: the engine audits a target,
the orchestrator (and the workers it starts) call it. That keeps the package free of import
cycles (``tests/test_import_cycles.py``).
"""
from __future__ import annotations

from collections.abc import Mapping

from evalguard.engine import _with_usage, audit_one, audit_target, run_metadata, set_step_listener
from evalguard.findings import Finding, Report, Severity, TargetResult
from evalguard.subject import AuditOptions


def audit(targets: list[str], options: AuditOptions,
          severity_overrides: Mapping[str, Severity] | None = None,
          metadata: Mapping | None = None, execution=None) -> Report:
    """Audit command-line targets, and the ``--model`` factory itself unless a target took it
    as its architecture (so a ``--model`` given with other targets is never ignored).

    ``execution`` (an ``evalguard.execution.ExecutionOptions``; default: this process, no
    progress line) picks this run's shard of the targets and whether model targets run in
    worker processes (crash, timeout and memory isolation, ``--jobs``). Source files run no
    user code: they are audited here, or in forked worker processes when there are many
    (``evalguard.execution.sources``), with the same results.
    """
    from evalguard.execution import ExecutionOptions, NeedsWorker, Target, shard_slice
    from evalguard.loading import factory_used, load_factory_subject
    from evalguard.planning import factory_for, plan_paths

    execution = execution or ExecutionOptions(isolate=False, progress=False, source_jobs=1)   # callers from Python: as before
    paths, pairs = plan_paths(targets, options.exclude)
    pairs.update(dict(options.onnx_pairs))          # pairs the CLI found walking folders for configs
    items = [Target(0, options.model_factory, None)] if not targets and options.model_factory else []
    items += [Target(len(items) + i, path, path, planned=True, paired_onnx=pairs.get(path),
                     architecture=factory_for(path, options.model_factory, options.model_map))
              for i, path in enumerate(paths)]
    items = shard_slice(items, execution.shard, key=lambda t: t.display)
    models = [t for t in items if not t.is_source]
    isolated = execution.isolated(len(models))

    from evalguard.execution.progress import Progress

    outcomes: dict[Target, tuple[TargetResult, list[Finding]]] = {}
    with Progress(len(items), enabled=execution.progress, log_finished=len(models) > 1) as progress:
        from evalguard.execution.sources import run_sources

        # .py files first, forked before anything in this process loads a model (and torch)
        outcomes.update(run_sources([t for t in items if t.is_source], options, severity_overrides,
                                    execution, progress))
        if isolated and execution.executor == "ray":
            from evalguard.execution.ray_tasks import run_on_ray

            outcomes.update(run_on_ray(models, options, severity_overrides, execution, progress))
        elif isolated:
            from evalguard.execution.local import run_workers

            outcomes.update(run_workers(models, options, severity_overrides, execution, progress))
        previous = set_step_listener(progress.step)
        contained = []   # targets whose loading runs a program: audited in an isolated worker (issue 25)
        try:
            for target in items:
                if target not in outcomes:
                    progress.begin(target.display)
                    try:
                        outcomes[target] = audit_target(target, options, severity_overrides)
                    except NeedsWorker:
                        contained.append(target)   # begun here, finished by its worker
                        continue
                    progress.finish(target.display, status=outcomes[target][0].status)
        finally:
            set_step_listener(previous)
        if contained:
            from evalguard.execution.local import run_workers

            isolated = True
            outcomes.update(run_workers(contained, options, severity_overrides, execution, progress))

    results = [_with_usage(outcomes[t][0], progress.usage(t.display)) for t in items]
    found = [f for t in items for f in outcomes[t][1]]
    first_shard = not execution.shard or execution.shard[0] == 1
    if targets and options.model_factory and first_shard and \
            not any(factory_used(r, options.model_factory) for r in results):
        # a --model that no target took as its architecture: audit the model it builds too
        result, extra_findings = audit_one(lambda: load_factory_subject(options), options.model_factory,
                                           options, severity_overrides)
        results.append(result)
        found.extend(extra_findings)
    findings = sorted(found, key=Finding.sort_key)
    extra = dict(metadata or {})
    if execution.shard:
        extra["shard"] = f"{execution.shard[0]}/{execution.shard[1]}"
    extra["execution"] = {"isolated": isolated, "jobs": execution.jobs if isolated else 1}
    if execution.executor != "local":
        extra["execution"]["executor"] = execution.executor
    return Report(targets=tuple(results), findings=tuple(findings), metadata=run_metadata(options, extra))
