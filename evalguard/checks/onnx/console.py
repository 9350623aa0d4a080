"""Terminal progress for the slow ONNX steps, and silence for everything the exporters print.

The exporters write to stdout (dynamo progress lines), to Python logging (missing torchvision
ops) and from C++ straight to file descriptor 2 (the TorchScript exporter dumps the whole IR
graph when it fails; ONNX Runtime logs run errors). A JSON report on stdout must not be
corrupted by any of that, so the noisy calls run with fd 1 and 2 pointed at a scratch file.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator

#: Loggers that chatter during export; silenced for the duration only.
_NOISY_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "torch._export",
                  "onnxscript", "onnx_ir", "torch.utils._sympy", "torch._subclasses")


@contextlib.contextmanager
def progress(message: str) -> Iterator[None]:
    """``evalguard: message ... done (1.2s)`` on an interactive stderr; nothing otherwise.

    Inside an audit run the message is that run's current step instead (its progress line,
    or the step a worker process reports to its parent)."""
    from evalguard import engine

    if engine.step_listener() is not None:
        engine.step_listener()(message)
        yield
        return
    stream = sys.stderr
    show = stream is not None and hasattr(stream, "isatty") and stream.isatty()
    if show:
        stream.write(f"evalguard: {message} ...")
        stream.flush()
    start = time.perf_counter()
    ok = False
    try:
        yield
        ok = True
    finally:
        if show:
            stream.write(f" {'done' if ok else 'failed'} ({time.perf_counter() - start:.1f}s)\n")
            stream.flush()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow Python- and C-level output to stdout/stderr, warnings and exporter logging."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_levels = {}
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        saved_levels[name] = logger.level
        logger.setLevel(logging.CRITICAL + 1)
    with tempfile.TemporaryFile() as scratch, _redirect_fds(scratch.fileno()), \
            warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for name, level in saved_levels.items():
                logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _redirect_fds(target: int) -> Iterator[None]:
    saved = []
    try:
        for fd in (1, 2):
            saved.append((fd, os.dup(fd)))
            os.dup2(target, fd)
    except OSError:  # no real descriptors (embedded interpreter): Python-level redirection only
        pass
    try:
        yield
    finally:
        _flush_c_stdio()
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)


def _flush_c_stdio() -> None:
    # printf-style output still sitting in libc's buffer would land on the real stdout later.
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except Exception:  # noqa: BLE001 - best effort; not every platform exposes libc this way
        pass
