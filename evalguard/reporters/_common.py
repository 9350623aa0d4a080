"""Small facts every CI/HTML renderer needs: the verdict, file paths, findings per target."""
from __future__ import annotations

import re
from dataclasses import dataclass

from evalguard.findings import Finding, Report, Severity

#: A factory target is reported as "path/to/file.py:build_model"; the file is the artifact.
_FACTORY_FILE = re.compile(r"^(?P<file>.+\.py):(?P<callable>[A-Za-z_][\w.]*)$")
#: "package.module:function" factories have no file at all.
_MODULE_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

SEVERITIES = (Severity.ERROR, Severity.WARNING, Severity.INFO)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def fail_on(report: Report) -> Severity:
    """The threshold the run used; ``error`` when the engine did not record one."""
    value = report.metadata.get("fail_on", "error")
    if isinstance(value, Severity):
        return value
    try:
        return Severity.parse(str(value))
    except ValueError:
        return Severity.ERROR


def artifact_path(path: str) -> str | None:
    """The file a location path points into, or None for ``module:function`` factories.

    ``examples/demo.py:build_model`` -> ``examples/demo.py``; ``./a\\b.pt`` -> ``a/b.pt``.
    """
    text = path.replace("\\", "/")
    match = _FACTORY_FILE.match(text)
    if match:
        text = match.group("file")
    elif _MODULE_FACTORY.match(text) and not re.match(r"^[A-Za-z]:/", text):
        return None
    while text.startswith("./"):
        text = text[2:]
    return text or None


@dataclass(frozen=True)
class Verdict:
    blocked: bool
    headline: str          # "Safe to deploy" / "Blocked: 2 errors"
    detail: str            # one sentence under the headline
    threshold: Severity
    blocking: dict         # severity name -> count at or above the threshold
    not_audited: int       # targets with status "error"
    tone: str = ""         # "blocked", "safe" or "caution" (nothing blocks, but not all was checked)
    not_run: int = 0       # selected, applicable rules that did not run (target x rule)


def verdict(report: Report) -> Verdict:
    threshold = fail_on(report)
    blocking = {str(s): 0 for s in SEVERITIES if s >= threshold}
    for finding in report.at_or_above(threshold):
        blocking[str(finding.severity)] += 1
    not_audited = sum(1 for t in report.targets if t.status == "error")
    parts = [plural(n, name) for name, n in blocking.items() if n]
    if not_audited:
        parts.append(plural(not_audited, "target") + " not audited")
    counts = report.summary
    below = [plural(counts[str(s)], str(s)) for s in SEVERITIES if s < threshold and counts[str(s)]]
    if parts:
        detail = f"Findings at or above --fail-on {threshold} stop this deployment."
        if not_audited and not any(blocking.values()):
            detail = "A target could not be read, so it was not checked at all."
        return Verdict(True, "Blocked: " + ", ".join(parts), detail, threshold, blocking, not_audited, "blocked")
    if not report.targets:
        return Verdict(False, "Nothing audited", "No targets were given.", threshold, blocking, 0, "caution")
    refused = sum(1 for t in report.targets if t.status == "refused")
    if refused:
        # Not loaded means not checked: "safe" would claim more than the audit saw.
        return Verdict(False, "No blocking findings",
                       f"{plural(refused, 'target')} refused (unsafe pickle) and not checked.",
                       threshold, blocking, 0, "caution")
    not_run = sum(len(t.not_run()) for t in report.targets)
    if not_run:
        # A rule that did not run did not pass: never green.
        detail = (f"{plural(not_run, 'check')} did not run (see 'Not checked'); "
                  + (f"{', '.join(below)} to review." if below else "nothing was found by the checks that ran."))
        headline = "No blocking findings" if below else "No findings"
        return Verdict(False, f"{headline} — {plural(not_run, 'check')} did not run", detail, threshold,
                       blocking, 0, "caution", not_run)
    if below:
        detail = f"No findings at or above --fail-on {threshold}; {', '.join(below)} to review."
    else:
        detail = "Every selected check ran and passed."
    return Verdict(False, "Safe to deploy", detail, threshold, blocking, 0, "safe")


def findings_by_target(report: Report) -> list[tuple[str, object, list[Finding]]]:
    """(path, TargetResult or None, findings) in target order; unmatched paths come last."""
    groups: dict[str, list[Finding]] = {t.path: [] for t in report.targets}
    for finding in report.findings:
        groups.setdefault(finding.location.path, []).append(finding)
    targets = {t.path: t for t in report.targets}
    return [(path, targets.get(path), found) for path, found in groups.items()]
