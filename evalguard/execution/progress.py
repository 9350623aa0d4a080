"""Progress on stderr while targets are audited, and each target's wall time and peak memory.

On a terminal, one line rewritten in place (``\\r``) and redrawn every second, so the clock
moves during a long step::

    evalguard: 3/8 done, 0:42 elapsed, ETA 1:10 | models/b.pt: eval_mode 12s | c.pt: loading 2s

Without a terminal (CI logs, a redirected stderr) there is never a ``\\r`` line: when the run
has two or more model targets, one line per finished model target is written as it finishes::

    evalguard: [3/8] models/b.pt: audited in 12.3s, peak RSS 812 MiB (0:42 elapsed)

``--quiet`` turns both off. Thread-safe: executors' threads report their targets' steps here.
Whatever the output, ``usage(target)`` gives the target's wall time (from ``begin``, when it
started running, to ``finish``) and the peak RSS its executor measured.
"""
from __future__ import annotations

import shutil
import sys
import threading
import time

#: Seconds between redraws of the terminal line (the clocks in it move).
TICK_S = 1.0


def clock(seconds: float) -> str:
    """``0:42``, ``12:03``, ``1:02:03``."""
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def size(kib: int) -> str:
    return f"{kib / (1 << 20):.1f} GiB" if kib >= 1 << 20 else f"{kib / 1024:.0f} MiB"


class Progress:
    def __init__(self, total: int, enabled: bool = True, stream=None, log_finished: bool = True):
        """``enabled``: any output at all (``--quiet`` turns it off); ``log_finished``: on a
        stream that is not a terminal, one line per finished model target."""
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        interactive = bool(isatty is not None and isatty())
        self.enabled = bool(enabled and total and interactive)        # the \r line
        self.log_lines = bool(enabled and total and log_finished and not interactive)
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._steps: dict[str, tuple[str, float]] = {}    # running target -> (step, since)
        self._begun: dict[str, float] = {}
        self._usage: dict[str, tuple[float, int | None]] = {}   # finished target -> (seconds, peak KiB)
        self._model_seconds: list[float] = []
        self._current: str | None = None      # the target the in-process audit is on
        self._lock = threading.Lock()
        self._shown = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- events
    def begin(self, target: str) -> None:
        """``target`` starts running now (not when it was queued): its clock starts here."""
        with self._lock:
            now = time.monotonic()
            self._current = target
            self._begun[target] = now
            self._steps[target] = ("starting", now)
            self._draw()
        self._start_ticker()

    def step(self, name: str, target: str | None = None) -> None:
        """``target`` None: the target this process is auditing (in-process runs)."""
        with self._lock:
            target = target or self._current
            if target is None or target not in self._steps:
                return
            self._steps[target] = (name, time.monotonic())
            self._draw()

    def finish(self, target: str, peak_rss_kib: int | None = None, status: str | None = None) -> None:
        """``target`` is done; ``peak_rss_kib`` is its worker's peak (None: not measured)."""
        with self._lock:
            now = time.monotonic()
            self._steps.pop(target, None)
            begun = self._begun.pop(target, None)
            seconds = now - begun if begun is not None else 0.0
            self._usage[target] = (seconds, peak_rss_kib)
            self.done += 1
            if not target.endswith(".py"):
                self._model_seconds.append(seconds)
                if self.log_lines:
                    self._log_finished(target, seconds, peak_rss_kib, status)
            self._draw()

    def usage(self, target: str) -> tuple[float, int | None] | None:
        """(wall seconds, peak RSS KiB or None) of a finished target; None if it never ran."""
        with self._lock:
            return self._usage.get(target)

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
                self._draw()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=2 * TICK_S)
        with self._lock:
            if self._shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._shown = False

    # ---------------------------------------------------------------- drawing
    def _start_ticker(self) -> None:
        if not self.enabled or self._ticker is not None:
            return
        self._ticker = threading.Thread(target=self._tick, name="evalguard-progress", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            with self._lock:
                if self._steps:
                    self._draw()

    def _eta(self, now: float) -> str:
        """Remaining targets times the mean wall time per finished target so far (parallel jobs included)."""
        if not self.done or self.done >= self.total:
            return ""
        elapsed = now - self.started
        per_target = elapsed / self.done
        return f", ETA {clock(per_target * (self.total - self.done))}"

    def _log_finished(self, target: str, seconds: float, peak_rss_kib: int | None, status: str | None) -> None:
        what = status or "done"
        text = f"evalguard: [{self.done}/{self.total}] {target}: {what} in {seconds:.1f}s"
        if peak_rss_kib:
            text += f", peak RSS {size(peak_rss_kib)}"
        self.stream.write(f"{text} ({clock(time.monotonic() - self.started)} elapsed)\n")
        self.stream.flush()

    def status_line(self, width: int, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        text = f"evalguard: {self.done}/{self.total} done, {clock(now - self.started)} elapsed{self._eta(now)}"
        running = sorted(self._steps.items(), key=lambda item: self._begun.get(item[0], now))
        for shown, (target, (step, since)) in enumerate(running):
            tail = f": {step} {clock(now - since)}"
            room = width - len(text) - 3 - len(tail)
            if len(target) > room:
                if room < 12:                  # no room for another one: say how many are left
                    more = f" (+{len(running) - shown} running)"
                    text += more if len(text) + len(more) <= width else ""
                    break
                target = "..." + target[-(room - 3):]   # long paths lose their start, not the step
            text += f" | {target}{tail}"
        return text if len(text) <= width else text[: max(0, width - 3)] + "..."

    def _draw(self) -> None:
        if not self.enabled:
            return
        width = shutil.get_terminal_size((80, 20)).columns - 1
        self.stream.write("\r\x1b[K" + self.status_line(width))
        self.stream.flush()
        self._shown = True
