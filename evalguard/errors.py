"""Exceptions that end an audit of one target (or the whole run) with exit code 2."""


class EvalguardError(Exception):
    """A usage error or a target that cannot be audited; its message is the one-line reason."""


class UsageError(EvalguardError):
    """Bad flags, bad configuration, bad rule ids."""


class TargetError(EvalguardError):
    """A target that is missing, empty, corrupt or of an unsupported kind."""


class RefusedTarget(EvalguardError):
    """A target that was deliberately not loaded (unsafe pickle); ``findings`` say why."""

    def __init__(self, message: str, findings, kind: str = "unknown"):
        super().__init__(message)
        self.findings = list(findings)
        self.kind = kind


class InternalError(Exception):
    """evalguard's own step failed (not the user's code): the engine reports it as EG900 naming
    ``step``. Raised with the original exception as ``cause`` (and ``__cause__``)."""

    def __init__(self, step: str, cause: BaseException):
        super().__init__(f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__)
        self.step = step
        self.cause = cause
        self.__cause__ = cause


class ReporterError(EvalguardError):
    """A reporter raised (evalguard's bug, EG900): the run ends with this one line and exit 2."""

    def __init__(self, step: str, cause: BaseException):
        text = first_line(cause) if str(cause).strip() else ""
        super().__init__(f"internal error in evalguard's {step} (EG900): {type(cause).__name__}"
                         + (f": {text}" if text else ""))
        self.step = step
        self.cause = cause


def internal_cause(exc: BaseException) -> InternalError | None:
    """The ``InternalError`` ``exc`` is or wraps (a library such as an exporter may re-raise our
    own bug as its error), else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, InternalError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message as one line for an ``error:`` line (its class name if empty)."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


class NeedsWorker(BaseException):
    """Raised by a loader in the audit's own process when loading the target would run a program
    (TorchScript, ``.pt2``) or package code (see ``evalguard.loading.trial``): the orchestrator
    audits that target in an isolated worker instead. A ``BaseException`` so that no loader's
    ``except Exception`` turns it into an error of the file."""
