"""EG208: a state_dict that does not fill the architecture it was loaded into.

Judged from the loader's ``WeightsFacts`` (``subject.load.weights``): the keys of the
architecture the file did not provide (left at their initial, usually random, values) and the
keys of the file the architecture did not take (silently dropped), after the wrapper prefixes
and the renames the architecture's own library applies. Tied weights (an output layer sharing
the input embedding) are not missing: the loader leaves them out.
"""
from __future__ import annotations

from evalguard.checks.weights import CHECK
from evalguard.facts import WeightsFacts
from evalguard.findings import Finding, Location
from evalguard.outcome import CheckOutcome, Outcome
from evalguard.subject import AuditOptions, AuditSubject

NAMES_IN_MESSAGE = 5

#: Why there is nothing to match, by subject kind.
_OWN_MODULE = {
    "full-module-pickle": "the file holds the whole module with its own weights",
    "torchscript": "a TorchScript archive carries its own module and weights",
    "exported-program": "an exported program carries its own graph and weights",
    "factory": "the model is what --model built; no weights file was loaded into it",
    "live-module": "a live module carries its own weights",
}


def run(subject: AuditSubject, options: AuditOptions) -> CheckOutcome:
    out = Outcome(options, CHECK.rules)
    weights = subject.load.weights if subject.load is not None else None
    if weights is None:
        reason = _OWN_MODULE.get(subject.kind, "the target carries its own module; there is no state_dict to match")
        out.not_applicable("EG208", reason)
        return out.done()
    finding = _finding(subject, weights)
    if finding is not None:
        out.add(finding)
    out.ran("EG208")
    return out.done()


def _finding(subject: AuditSubject, weights: WeightsFacts) -> Finding | None:
    if not weights.missing_count and not weights.unexpected_count:
        return None
    parts = []
    if weights.missing_count:
        parts.append(f"{weights.missing_count} of the {weights.expected} tensors the architecture expects are not "
                     f"in the file and keep their initial values ({_names(weights.missing, weights.missing_count)})")
    if weights.unexpected_count:
        parts.append(f"{weights.unexpected_count} tensor{'s' if weights.unexpected_count != 1 else ''} in the file "
                     f"{'are' if weights.unexpected_count != 1 else 'is'} not used by the architecture "
                     f"({_names(weights.unexpected, weights.unexpected_count)})")
    message = "; ".join(parts) + f" [architecture: {weights.architecture or 'unknown'}]"
    evidence = {"architecture": weights.architecture, "loaded": weights.loaded, "expected": weights.expected,
                "missing": list(weights.missing), "missing_count": weights.missing_count,
                "unexpected": list(weights.unexpected), "unexpected_count": weights.unexpected_count,
                "renamed": weights.renamed}
    if weights.stripped_prefix:
        evidence["stripped_prefix"] = weights.stripped_prefix
    return Finding("EG208", message, Location(path=subject.path), evidence=evidence)


def _names(names, count: int) -> str:
    shown = ", ".join(list(names)[:NAMES_IN_MESSAGE])
    more = count - min(len(names), NAMES_IN_MESSAGE)
    return shown + (f", … ({more} more)" if more > 0 else "")
