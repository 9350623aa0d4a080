"""The HTML report in a real browser: Debian's headless chromium opens it from disk.

Checks: the page renders (DOM holds the verdict and the pictures), the browser logs no console
message at all (a CSP violation would be one), and the page makes no network request. Network
requests are read from chromium's own net log; chromium also talks to Google in the background
whatever the flags say, so only requests made on behalf of the file:// page count. A control
page that does fetch something proves the detector works. A screenshot is written to tmp_path
(and to $EVALGUARD_SCREENSHOT_DIR when set, for people to look at).
"""
from __future__ import annotations

import html as htmllib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_reporters_samples import blocked_report, golden_catalogue

from evalguard import catalogue
from evalguard.reporters import render

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or (
    "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium); "
                             "the browser test needs it to load the report")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--disable-default-apps", "--enable-logging=stderr", "--v=0"]


def _chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    args = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def _page_requests(netlog: Path) -> list[str]:
    """URLs of network requests made for a file:// page (not chromium's own background calls)."""
    data = json.loads(netlog.read_text(encoding="utf-8", errors="replace"))
    start_job = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in data.get("events", []):
        params = event.get("params") or {}
        if event.get("type") != start_job or "url" not in params:
            continue
        by_page = "file://" in str(params.get("network_isolation_key", "")) \
            or "site=file://" in str(params.get("site_for_cookies", ""))
        if by_page and not params["url"].startswith(("file:", "data:")):
            urls.append(params["url"])
    return urls


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("html") / "report.html"
    with pytest.MonkeyPatch.context() as patch:
        # Frozen rule texts: the screenshot shows finished prose whatever state rules/ is in.
        patch.setattr(catalogue, "load_catalogue", golden_catalogue)
        path.write_text(render(blocked_report(), "html"), encoding="utf-8")
    return path


def test_report_renders_without_console_messages_or_network(tmp_path, report_file):
    netlog, shot = tmp_path / "net.json", tmp_path / "report.png"
    result = _chromium(tmp_path, report_file, f"--log-net-log={netlog}",
                       f"--screenshot={shot}", "--window-size=1280,2000")
    assert result.returncode == 0, result.stderr[-2000:]
    assert _console(result.stderr) == []
    assert _page_requests(netlog) == []
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000   # a blank page is ~5 kB
    target = os.environ.get("EVALGUARD_SCREENSHOT_DIR")
    if target:
        shutil.copyfile(shot, Path(target) / "report.png")


def test_dom_holds_the_verdict_and_the_pictures(tmp_path, report_file):
    result = _chromium(tmp_path, report_file, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert "Blocked: 4 errors" in dom
    assert dom.count("<svg") >= 6 and 'class="node start"' in dom and 'class="flagged"' in dom


def test_dom_holds_the_ml_lead_sections(tmp_path, report_file):
    """The issue-19 sections survive a real parser and the strict CSP: targets table of contents,
    'What was audited', the model summary, the mode table folded by parent, the ONNX charts."""
    result = _chromium(tmp_path, report_file, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    toc = dom[dom.index('class="card targets-toc"'):]
    assert 'href="#target-1"' in toc and 'href="#target-2"' in toc and "Blocked: 3 errors" in toc
    assert dom.count("What was audited") == 2 and "worst |error| 0.4137" in dom
    summary = dom[dom.index('class="summary"'):dom.index('class="modebar"')]
    assert "Layer types" in summary and summary.count("<rect") == 6
    assert dom.count('<details class="mode-group') == 3 and '<details class="mode-group has-flagged" open="">' in dom
    chart = dom[dom.index('<svg class="parity-chart"'):]
    assert "per output (log scale)" in chart[:chart.index("</svg>")]
    hist = dom[dom.index('<svg class="hist"'):]
    assert "|error| per decade" in hist[:hist.index("</svg>")] and "elements" in hist[:hist.index("</svg>")]


def test_the_network_detector_sees_a_page_that_fetches(tmp_path):
    page = tmp_path / "fetches.html"
    page.write_text('<!DOCTYPE html><p>x</p><img src="http://example.invalid/pixel.png">'
                    '<script>console.error("boom")</script>', encoding="utf-8")
    netlog = tmp_path / "net.json"
    result = _chromium(tmp_path, page, f"--log-net-log={netlog}", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert _page_requests(netlog) == ["http://example.invalid/pixel.png"]
    assert any("boom" in line for line in _console(result.stderr))


#: Injected into a copy of the page (the report itself runs no script and its CSP forbids one):
#: after layout, records what a reader would see go wrong, as JSON in the DOM.
MEASURE = """<script>
const cells = [...document.querySelectorAll("td, th, dd, dt")];
const overflowing = cells.filter(el => el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === "visible")
  .map(el => el.tagName + ": " + el.textContent.trim().slice(0, 80));
const narrowHeaders = [...document.querySelectorAll("th")].filter(th => {
  const r = document.createRange(); r.selectNodeContents(th);
  return th.textContent.trim().length > 3 && r.getClientRects().length > 2;
}).map(th => th.textContent.trim());
const nav = [...document.querySelectorAll("nav.toc a")].map(a => a.textContent.trim());
const result = {overflowing, narrowHeaders, nav,
  pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth,
  text: document.body.innerText};
document.body.setAttribute("data-measure", JSON.stringify(result));
</script>"""


def _measured(tmp_path, html: str) -> dict:
    page = tmp_path / "measured.html"
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    page.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    result = _chromium(tmp_path, page, "--dump-dom", "--window-size=1280,2000")
    assert result.returncode == 0, result.stderr[-2000:]
    attribute = re.search(r'data-measure="([^"]*)"', result.stdout)
    assert attribute, "the measuring script did not run"
    return json.loads(htmllib.unescape(attribute.group(1)))


def test_newcomer_report_reads_cleanly_in_a_browser(tmp_path):
    """Issue 30: no text wider than its cell, no header wrapped a letter per line, no raw dict
    text, and every navigation link names its target; a screenshot for people to look at."""
    from test_reporters_html import newcomer_report

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(catalogue, "load_catalogue", golden_catalogue)
        html = render(newcomer_report(tmp_path), "html")
    measured = _measured(tmp_path, html)
    assert measured["overflowing"] == []
    assert measured["narrowHeaders"] == []
    assert measured["pageWidth"] <= measured["viewport"]
    assert "{label" not in measured["text"] and "label:" not in measured["text"]
    per_target = [link for link in measured["nav"] if link not in ("Findings", "Run details")]
    assert per_target and all(link.endswith(": classifier.pt") for link in per_target), measured["nav"]
    page = tmp_path / "newcomer.html"
    page.write_text(html, encoding="utf-8")
    shot = tmp_path / "newcomer.png"
    assert _chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,3000").returncode == 0
    target = os.environ.get("EVALGUARD_SCREENSHOT_DIR")
    if target:
        shutil.copyfile(shot, Path(target) / "newcomer.png")
