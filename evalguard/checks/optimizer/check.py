"""EG301 / EG302 from the optimizer state saved in a checkpoint.

EG301: an Adam-family param group with weight_decay > 0 whose decay is coupled (L2 added to the
gradient before the adaptive scaling). EG302: param groups with weight_decay > 0 that contain
biases or normalisation parameters. Both are judged group by group; one finding per optimizer.
"""
from __future__ import annotations

from collections.abc import Iterable

from evalguard.checks.optimizer import CHECK
from evalguard.checks.optimizer.names import module_index, name_parameters, param_role, state_shape
from evalguard.checks.optimizer.state import classify_group, hint_from, optimizer_states, state_keys, weight_decay
from evalguard.facts import OptimizerFacts, OptimizerGroupFact, OptimizerStateFact
from evalguard.findings import Finding, Location
from evalguard.outcome import CheckOutcome, Outcome
from evalguard.subject import AuditOptions, AuditSubject

MAX_LISTED = 500      # names kept in evidence; the counts stay exact
MAX_IN_MESSAGE = 6
FIXES = {"Adam": "use AdamW (or Adam(decoupled_weight_decay=True))",
         "NAdam": "pass decoupled_weight_decay=True", "RAdam": "pass decoupled_weight_decay=True",
         "Adamax": "use AdamW (Adamax has no decoupled option)"}


def run(subject: AuditSubject, options: AuditOptions) -> CheckOutcome:
    out = Outcome(options, CHECK.rules)
    if subject.optimizer_state is None:
        out.not_applicable(CHECK.rules, "no optimizer state in this target")
        return out.done()
    states = optimizer_states(subject.optimizer_state)
    if not states:
        note = "optimizer state present but not a torch optimizer state_dict"
        out.skip(CHECK.rules, note)
        out.fact(OptimizerFacts(note=note))
        return out.done()
    loaded = subject.load.optimizer if subject.load is not None else None
    summaries = []
    for index, state in enumerate(states):
        label = "optimizer" if len(states) == 1 else f"optimizer {index}"
        summary = _summary(state, index, loaded)
        if options.wants("EG301"):
            out.extend(_coupled_decay(subject, state, label, summary, loaded))
        if options.wants("EG302"):
            out.extend(_decay_on_bias_and_norm(subject, state, label))
        summaries.append(_state_fact(summary))
    out.ran(*CHECK.rules)
    out.fact(OptimizerFacts(optimizers=tuple(summaries)))
    return out.done()


def _state_fact(summary: dict) -> OptimizerStateFact:
    return OptimizerStateFact(index=summary["index"], class_hint=summary.get("class_hint"),
                              note=summary.get("note"),
                              groups=tuple(OptimizerGroupFact(**g) for g in summary["groups"]))


def _location(subject: AuditSubject) -> Location:
    return Location(path=subject.path)


def _summary(state, index, loaded) -> dict:
    """What the report shows about each optimizer, whether or not a rule fired."""
    hint = hint_from(state, loaded)
    groups = []
    for gi, group in enumerate(state["param_groups"]):
        kind = classify_group(group, state_keys(state, group), hint)
        groups.append({"index": gi, "optimizer": kind.family, "weight_decay": weight_decay(group),
                       "params": len(group.get("params", ())),
                       "decoupled_weight_decay": kind.decoupled, "basis": kind.basis})
    return {"index": index, "groups": groups, **({"class_hint": hint} if hint else {})}


def _coupled_decay(subject, state, label, summary, loaded) -> Iterable[Finding]:
    hint = hint_from(state, loaded)
    coupled = []
    for gi, group in enumerate(state["param_groups"]):
        kind = classify_group(group, state_keys(state, group), hint)
        wd = weight_decay(group)
        if wd > 0 and kind.decoupled is False:
            coupled.append((gi, group, kind, wd))
        elif wd > 0 and kind.family == "Adam or AdamW":
            summary["note"] = ("weight decay > 0 in an Adam-family group saved by torch < 2.7: "
                               "cannot tell Adam (coupled) from AdamW (decoupled); EG301 not judged")
    if not coupled:
        return
    family = coupled[0][2].family
    confidence = "medium" if any(k.confidence == "medium" for _, _, k, _ in coupled) else "high"
    n_params = sum(len(g.get("params", ())) for _, g, _, _ in coupled)
    decays = sorted({wd for *_, wd in coupled})
    groups_text = ", ".join(str(gi) for gi, *_ in coupled)
    fix = FIXES.get(family, "use AdamW")
    message = (f"{label}: {family} applies weight_decay={_fmt(decays)} as coupled L2 (added to the "
               f"gradient before the adaptive scaling) in param group{'s' if len(coupled) > 1 else ''} "
               f"{groups_text} ({n_params} parameters); {fix} for decoupled weight decay")
    if confidence != "high":
        message += f" [confidence {confidence}: {coupled[0][2].basis}]"
    yield Finding("EG301", message, _location(subject), evidence={
        "optimizer": family, "optimizer_index": summary["index"], "confidence": confidence,
        "basis": coupled[0][2].basis,
        "groups": [{"index": gi, "weight_decay": wd, "params": len(g.get("params", ())),
                    "decoupled_weight_decay": g.get("decoupled_weight_decay")}
                   for gi, g, _, wd in coupled],
    })


def _decay_on_bias_and_norm(subject, state, label) -> Iterable[Finding]:
    decayed = [(gi, g) for gi, g in enumerate(state["param_groups"]) if weight_decay(g) > 0 and g.get("params")]
    if not decayed:
        return
    naming = name_parameters(state, subject.model)
    if naming.names is None:
        yield from _decay_on_vectors(subject, state, label, decayed, naming)
        return
    index = module_index(subject.model)
    biases, norms, groups = [], [], []
    for gi, group in decayed:
        roles = [(naming.names[pid], param_role(naming.names[pid], index)) for pid in group["params"]]
        g_bias = [n for n, r in roles if r == "bias"]
        g_norm = [n for n, r in roles if r == "norm"]
        if g_bias or g_norm:
            groups.append({"index": gi, "weight_decay": weight_decay(group),
                           "biases": len(g_bias), "norm_params": len(g_norm)})
        biases += g_bias
        norms += g_norm
    if not biases and not norms:
        return
    listed = norms + biases
    shown = ", ".join(listed[:MAX_IN_MESSAGE]) + (f", … ({len(listed) - MAX_IN_MESSAGE} more)"
                                                   if len(listed) > MAX_IN_MESSAGE else "")
    message = (f"{label}: weight decay ({_fmt(sorted({g['weight_decay'] for g in groups}))}) reaches "
               f"{len(biases)} bias{'es' if len(biases) != 1 else ''} and {len(norms)} normalisation "
               f"parameter{'s' if len(norms) != 1 else ''}: {shown}")
    if naming.source != "param_names":
        message += f" (names from {naming.source}: {naming.note})"
    yield Finding("EG302", message, _location(subject), evidence={
        "biases": biases[:MAX_LISTED], "norm_params": norms[:MAX_LISTED],
        "bias_count": len(biases), "norm_count": len(norms), "groups": groups,
        "names_from": naming.source, "assumption": naming.note, "confidence": naming.confidence,
        "truncated": len(biases) > MAX_LISTED or len(norms) > MAX_LISTED,
    })


def _decay_on_vectors(subject, state, label, decayed, naming) -> Iterable[Finding]:
    """Without names, one-dimensional parameters stand in for biases and norm weights."""
    groups, total = [], 0
    for gi, group in decayed:
        shapes = [state_shape(state, pid) for pid in group["params"]]
        vectors = sum(1 for s in shapes if s is not None and len(s) == 1)
        if vectors:
            groups.append({"index": gi, "weight_decay": weight_decay(group), "vectors": vectors,
                           "params": len(shapes), "unknown_shape": sum(1 for s in shapes if s is None)})
            total += vectors
    if not total:
        return
    yield Finding("EG302", (
        f"{label}: weight decay ({_fmt(sorted({g['weight_decay'] for g in groups}))}) reaches {total} "
        f"one-dimensional parameter{'s' if total != 1 else ''} (by their state's shape; usually biases "
        f"and normalisation weights); parameter names unknown — pass --model to name them"),
        _location(subject), evidence={"vector_count": total, "groups": groups, "names_from": "none",
                                      "assumption": naming.note + "; 1-D state shape taken as bias/norm",
                                      "confidence": "low"})


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)
