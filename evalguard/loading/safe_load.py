"""Vet scanned globals (EG901/EG902 or a list of classes to allow), then load weights-only.

Nothing here ever unpickles with ``weights_only=False``: ``torch.load`` runs torch's
restricted unpickler, and only the globals the allow-list resolved are registered with
``torch.serialization.safe_globals`` for the duration of that one call.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from evalguard.errors import RefusedTarget, TargetError, first_line
from evalguard.findings import Finding, Location
from evalguard.loading.allowlist import ALLOWED, UNSAFE, AllowList
from evalguard.loading.pickle_scan import GlobalRef
from evalguard.loading.refusal import refuse_container, unpickler_reason  # noqa: F401 - loaders import them here

_SHOWN = 5


def _listing(names: Iterable[str]) -> str:
    names = list(dict.fromkeys(names))
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


#: Rebuild helpers of widely used packages that are deliberately not admitted, and the route that
#: works instead. ``kernels._internals.layer.layer._rebuild_kernel_func(module_name, func_name)``
#: (transformers >= 5 with ``kernels`` installed pickles its kernel-function modules this way)
#: imports the module named by a string in the file and instantiates a class found there: the
#: file, not the user, would choose what is imported, so trusting a package cannot make it safe.
STATE_DICT_ROUTE = ("save the weights instead (save_pretrained(folder) and audit the folder, or "
                    "torch.save(model.state_dict()) and pass --model MODULE:CALLABLE that builds the model)")
_NOT_ADMITTED = {
    "kernels._internals.": ("the `kernels` package's rebuild helper imports a module named in the file and "
                            "instantiates a class from it, so it is never admitted (the file would choose what "
                            "is imported); " + STATE_DICT_ROUTE),
}


def route_hint(names: Iterable[str]) -> str:
    """``; <why and what to do instead>`` for refused globals with a known working route, else ``""``."""
    for name in names:
        for prefix, hint in _NOT_ADMITTED.items():
            if name.startswith(prefix):
                return f"; {hint}"
    return ""


def vet(path: Path, refs: list[GlobalRef], allowlist: AllowList, kind: str,
        problems: Iterable[str] = (), unsafe_ops: Iterable[str] = ()) -> list[tuple[object, str]]:
    """Allowed ``(object, "module.name")`` pairs to register, or ``RefusedTarget``.

    ``problems`` are unsafe constructs other than globals (found in .pt2 programs);
    ``unsafe_ops`` are "op (in method)" descriptions of calls outside the pure-op allow-list (EG904).
    """
    register: dict[str, object] = {}
    unsafe: dict[str, dict] = {}
    untrusted: dict[str, dict[str, str]] = defaultdict(dict)
    for ref in refs:
        decision = allowlist.decide(ref)
        if decision.status == ALLOWED:
            if decision.obj is not None:
                register[ref.full] = decision.obj
            register.update(decision.extra)
        elif decision.status == UNSAFE:
            entry = unsafe.setdefault(ref.full, {"global": ref.full, "member": ref.member, "reason": decision.reason})
            if ref.member != entry["member"] and ref.member not in entry.setdefault("also_in", []):
                entry["also_in"].append(ref.member)  # e.g. several files of a model folder
        else:
            untrusted[decision.package].setdefault(ref.full, ref.member)
    problems, unsafe_ops = list(problems), list(unsafe_ops)
    findings = []
    if unsafe or problems:
        findings.append(_unsafe_finding(path, unsafe, problems))
    if unsafe_ops:
        findings.append(unsafe_op_finding(path, unsafe_ops))
    findings += [_untrusted_finding(path, package, globals_) for package, globals_ in sorted(untrusted.items())]
    if findings:
        reasons = _refusal_line(path, unsafe, problems, untrusted)
        if unsafe_ops:
            reasons += ("; " if unsafe or problems or untrusted else "") + "unsafe operations in the program"
        raise RefusedTarget(reasons, findings, kind=kind)
    return [(obj, name) for name, obj in register.items()]


def _unsafe_finding(path: Path, unsafe: dict[str, dict], problems: list[str]) -> Finding:
    parts = []
    if unsafe:
        parts.append(f"references {len(unsafe)} global(s) outside the allow-list: {_listing(unsafe)}")
    if problems:
        parts.append(f"holds {len(problems)} construct(s) that would run code: {_listing(problems)}")
    return Finding(
        rule="EG901",
        message=f"{'; '.join(parts)}; the file was not loaded{route_hint(unsafe)}",
        location=Location(path=str(path)),
        evidence={"globals": sorted(unsafe), "details": [unsafe[k] for k in sorted(unsafe)],
                  **({"constructs": problems} if problems else {})},
    )


def _untrusted_finding(path: Path, package: str, globals_: dict[str, str]) -> Finding:
    names = sorted(globals_)
    short = [name.rsplit(".", 1)[-1] for name in names]
    if package == "__main__":
        message = (f"needs classes defined in the script that saved it ({_listing(short)}), which cannot be "
                   "rebuilt here; save model.state_dict() instead and pass --model MODULE:CALLABLE; "
                   "the file was not loaded")
        flag = "--model MODULE:CALLABLE"
    else:
        message = (f"needs classes from package '{package}' ({_listing(short)}); pass --trust-module {package} "
                   "if you trust it; the file was not loaded")
        flag = f"--trust-module {package}"
    return Finding(rule="EG902", message=message, location=Location(path=str(path)),
                   evidence={"package": package, "globals": names, "flag": flag})


def unsafe_op_finding(path: Path, ops: list[str]) -> Finding:
    return Finding(rule="EG904", location=Location(path=str(path)),
                   message=(f"the saved program calls {len(ops)} operation(s) outside the pure-tensor allow-list: "
                            f"{_listing(ops)}; nothing of it was run"),
                   evidence={"operations": ops})


def trial_load(path: Path, how: str, names: list[str] = (), trust_modules=(), kind: str = "unknown") -> None:
    """See ``evalguard.loading.trial.trial_load`` (a program never loads in the audit's process)."""
    from evalguard.loading.trial import trial_load as isolated_trial

    isolated_trial(path, how, names, trust_modules, kind=kind)


def _refusal_line(path: Path, unsafe, problems, untrusted) -> str:
    reasons = []
    if unsafe:
        reasons.append(f"unsafe globals {_listing(unsafe)}{route_hint(unsafe)}")
    if problems:
        reasons.append("code-running constructs")
    if untrusted:
        reasons.append("classes from untrusted package(s) " + ", ".join(sorted(untrusted)))
    return f"{path}: not loaded: " + "; ".join(reasons)


#: Globals from these packages only rebuild tensors and plain data; anything else (numpy, trusted
#: packages) makes the load happen once in the isolated trial process first.
_NO_TRIAL_ROOTS = ("torch", "builtins", "collections", "_codecs", "datetime", "argparse", "pathlib")
#: torch globals that still run native code on the file's data: a ScriptObject's BUILD calls the
#: registered C++ class's ``__setstate__`` (quantized packed weights re-pack the file's tensors).
_TRIAL_ANYWAY = frozenset({"torch.ScriptObject"})


def needs_trial(names) -> bool:
    """Whether loading a pickle with these globals runs more than torch's tensor rebuilding: then
    it is loaded first in the isolated trial (and the target is audited in a worker)."""
    return any(name.split(".")[0] not in _NO_TRIAL_ROOTS or name in _TRIAL_ANYWAY for name in names)


def torch_load(path: Path, register: list[tuple[object, str]], *, mmap: bool, trust_modules=(),
               kind: str = "pickle"):
    """``torch.load(weights_only=True)`` with exactly the vetted globals allowed."""
    import pickle

    import torch

    names = [name for _obj, name in register]
    if needs_trial(names):
        trial_load(path, "torch-load", names, trust_modules, kind=kind)

    try:
        with torch.serialization.safe_globals(register):
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise TargetError(f"{path}: torch's weights-only loader refused it: {unpickler_reason(exc)}") from exc
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, TypeError, AttributeError) as exc:
        raise TargetError(f"{path}: cannot be loaded (truncated or corrupt?): {first_line(exc)}") from exc
