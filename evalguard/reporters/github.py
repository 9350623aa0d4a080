"""GitHub Actions workflow commands, so findings show up as annotations on the pull request.

``--format github`` (or ``--report github:FILE``) renders only these commands; with the text
format the CLI also prints them when the environment has ``GITHUB_ACTIONS=true``. Syntax and escaping follow GitHub's "workflow commands" docs:
``::error file=F,line=L,col=C,title=T::message``.
"""
from __future__ import annotations

import os

from evalguard.findings import Finding, Report, Severity
from evalguard.reporters._common import artifact_path

COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _command(kind: str, message: str, **props) -> str:
    fields = ",".join(f"{key}={_escape_property(str(value))}" for key, value in props.items()
                      if value is not None)
    return f"::{kind}{' ' + fields if fields else ''}::{_escape_data(message)}"


def annotation(finding: Finding) -> str:
    loc = finding.location
    message = finding.message
    if loc.module:
        # A model has no line numbers: the module path is where to look.
        message = f"{loc.module}: {message}"
    title = f"{finding.rule} {finding.name}".strip()
    return _command(COMMANDS.get(finding.severity, "warning"), message,
                    file=artifact_path(loc.path), line=loc.line,
                    col=loc.column if loc.line is not None else None, title=title)


def annotations(report: Report) -> str:
    """One workflow command per finding and per target that could not be audited."""
    lines = [annotation(f) for f in report.findings]
    for target in report.targets:
        if target.status == "error":
            lines.append(_command("error", f"could not be audited: {target.detail}",
                                  file=artifact_path(target.path), title="evalguard"))
    return "".join(line + "\n" for line in lines)


def in_github_actions(environ=None) -> bool:
    return (environ if environ is not None else os.environ).get("GITHUB_ACTIONS") == "true"


def render(report: Report, *, color: bool = False) -> str:
    """``--format github``: one workflow command per finding and per target not audited."""
    return annotations(report)
