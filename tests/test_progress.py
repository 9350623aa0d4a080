"""What a long run shows (issue 29 item 11): on a terminal elapsed time, done/total, the running
targets with their step and time in it, and an ETA; without one a line per finished model target
as it finishes; each target's wall time and peak RSS in the JSON, HTML and --statistics reports."""
import io
import json
import subprocess
import sys
import time

from test_execution import COMMON, models  # noqa: F401 - models is a fixture

from evalguard.execution.progress import Progress, clock


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _lines(stream) -> list[str]:
    return [part for part in stream.getvalue().split("\r\x1b[K") if part]


def test_terminal_line_shows_elapsed_running_targets_their_step_and_an_eta(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    terminal = _Terminal()
    progress = Progress(4, stream=terminal)
    progress.begin("a.pt")
    now[0] += 10
    progress.finish("a.pt", peak_rss_kib=2048)
    progress.begin("b.pt")
    progress.begin("c.pt")
    now[0] += 5
    progress.step("eval_mode", "b.pt")
    now[0] += 3
    line = progress.status_line(199)
    assert line == "evalguard: 1/4 done, 0:18 elapsed, ETA 0:54 | b.pt: eval_mode 0:03 | c.pt: starting 0:08"
    assert progress.usage("a.pt") == (10.0, 2048)
    progress._stop.set()
    progress.close()
    assert not terminal.getvalue().count("\n"), "a terminal gets one line, rewritten in place"


def test_terminal_clock_moves_while_a_step_runs(monkeypatch):
    monkeypatch.setattr("evalguard.execution.progress.TICK_S", 0.05)
    terminal = _Terminal()
    with Progress(2, stream=terminal) as progress:
        progress.begin("slow.pt")
        deadline = time.monotonic() + 5
        while len(_lines(terminal)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert len(_lines(terminal)) >= 3, "redrawn by the ticker with no event from the target"


def test_without_a_terminal_one_line_per_finished_model_target():
    piped = io.StringIO()
    with Progress(3, stream=piped) as progress:
        progress.begin("src/train.py")
        progress.finish("src/train.py")
        progress.begin("b.pt")
        progress.step("eval_mode", "b.pt")
        assert piped.getvalue() == ""                  # steps are not logged, sources are not
        progress.finish("b.pt", peak_rss_kib=3 << 20, status="audited")
        first = piped.getvalue()
        progress.begin("c.pt")
        progress.finish("c.pt", status="error")
    assert first.startswith("evalguard: [2/3] b.pt: audited in ") and ", peak RSS 3.0 GiB (0:00 elapsed)\n" in first
    assert len(piped.getvalue().splitlines()) == 2 and "\r" not in piped.getvalue()
    for kwargs in ({"enabled": False}, {"log_finished": False}):
        quiet = io.StringIO()
        with Progress(2, stream=quiet, **kwargs) as progress:
            progress.begin("b.pt")
            progress.finish("b.pt")
        assert quiet.getvalue() == ""


def test_clock():
    assert [clock(s) for s in (0, 42.9, 723, 3723)] == ["0:00", "0:42", "12:03", "1:02:03"]


def test_ci_log_gets_a_line_as_each_target_finishes_and_reports_carry_usage(models, tmp_path):  # noqa: F811
    """A real `evalguard` process with stderr on a pipe (as in CI): the lines come while it runs."""
    html = tmp_path / "report.html"
    proc = subprocess.Popen([sys.executable, "-m", "evalguard", "check", "good.pt", "alloc.pt", *COMMON,
                             "--report", f"html:{html}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=models)
    first = proc.stderr.readline()
    still_running = proc.poll() is None
    out, rest = proc.communicate(timeout=600)
    assert first.startswith("evalguard: [1/2] ") and " in " in first and "peak RSS" in first
    assert still_running, "the first line came before the run ended"
    assert len([line for line in rest.splitlines() if line.startswith("evalguard: [")]) == 1
    report = json.loads(out)
    usage = {t["path"]: t["usage"] for t in report["targets"]}
    assert usage["good.pt"]["seconds"] > 0 and usage["good.pt"]["peak_rss_bytes"] > 10 << 20
    assert "Audit time" in html.read_text()


def test_statistics_lists_targets_by_time(run_cli, models):  # noqa: F811
    code, out, _ = run_cli("check", "good.pt", "alloc.pt", *COMMON[:-2], "--statistics")
    table = out[out.index("seconds\tpeak RSS\ttarget"):].splitlines()[1:3]
    assert sorted(line.split("\t")[-1] for line in table) == ["alloc.pt", "good.pt"]
    assert all(line.split("\t")[1].endswith("MiB") for line in table)
