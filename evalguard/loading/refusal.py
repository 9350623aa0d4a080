"""EG905 refusals: a file that cannot be vetted exactly as it would be loaded (or blew a limit).

And torch's own reason for a weights-only refusal. Its own module so that the trial load (``loading.trial``) and the safe loader (``loading.safe_load``)
both raise it without importing each other.
"""
from __future__ import annotations

from pathlib import Path

from evalguard.errors import RefusedTarget, first_line
from evalguard.findings import Finding, Location


def refuse_container(path: Path, reason: str, kind: str = "unknown") -> RefusedTarget:
    """EG905: the file cannot be vetted exactly as it would be loaded (or blew a limit)."""
    finding = Finding(rule="EG905", location=Location(path=str(path)),
                      message=f"{reason}; the file was not loaded", evidence={"reason": reason})
    return RefusedTarget(f"{path}: not loaded: {reason}", [finding], kind=kind)


def unpickler_reason(exc: BaseException) -> str:
    """torch's own reason from a weights-only refusal (its message opens with a long preamble
    about ``weights_only``; the reason is the ``WeightsUnpickler error:`` line), with the route
    that works where the reason is a known limit of torch's loader."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    reason = text.split(marker, 1)[1].strip().splitlines()[0].strip() if marker in text else first_line(exc)
    if reason.startswith("Can only SETITEMS") or reason.startswith("Can only SETITEM"):
        got = reason.rpartition("but got ")[2].strip("<>' ").removeprefix("class '")
        reason = (f"torch's weights-only loader cannot fill {got} (a dict subclass) item by item "
                  f"(SETITEMS), whatever is trusted; save model.state_dict() and pass --model MODULE:CALLABLE")
    return reason
