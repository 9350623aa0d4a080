"""One progress line on an interactive stderr: ``evalguard: [3/8] models/b.pt: eval_mode``.

Rewritten in place with ``\\r``; nothing at all when stderr is not a terminal or with
``--quiet``, so CI logs and redirected output stay clean. Thread-safe: worker threads report
their targets' steps here.
"""
from __future__ import annotations

import shutil
import sys
import threading


class Progress:
    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(enabled and total and isatty is not None and isatty())
        self.total = total
        self.done = 0
        self._steps: dict[str, str] = {}      # running target -> its latest step
        self._current: str | None = None      # the target the in-process audit is on
        self._lock = threading.Lock()
        self._shown = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- events
    def begin(self, target: str) -> None:
        with self._lock:
            self._current = target
            self._steps[target] = "starting"
            self._draw(target)

    def step(self, name: str, target: str | None = None) -> None:
        """``target`` None: the target this process is auditing (in-process runs)."""
        with self._lock:
            target = target or self._current
            if target is None:
                return
            self._steps[target] = name
            self._draw(target)

    def finish(self, target: str) -> None:
        with self._lock:
            self._steps.pop(target, None)
            self.done += 1
            latest = next(reversed(self._steps), None)
            self._draw(latest)

    def interject(self, text: str, stream=None) -> None:
        """Write ``text`` (worker output) without tearing the progress line."""
        stream = stream if stream is not None else self.stream
        with self._lock:
            if self._shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            stream.write(text if text.endswith("\n") else text + "\n")
            stream.flush()
            if self._shown:
                self._draw(next(reversed(self._steps), None))

    def close(self) -> None:
        with self._lock:
            if self._shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._shown = False

    # ---------------------------------------------------------------- drawing
    def _draw(self, target: str | None) -> None:
        if not self.enabled:
            return
        width = shutil.get_terminal_size((80, 20)).columns - 1
        text = f"evalguard: [{self.done}/{self.total}]"
        if target is not None and target in self._steps:
            others = len(self._steps) - 1
            tail = f": {self._steps[target]}" + (f" (+{others} running)" if others > 0 else "")
            room = width - len(text) - 1 - len(tail)
            if len(target) > room >= 8:          # long paths lose their start, not the step
                target = "..." + target[-(room - 3):]
            text += f" {target}{tail}"
        if len(text) > width:
            text = text[: max(0, width - 3)] + "..."
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self._shown = True
