"""report.html in headless Chromium, network blocked: every figure loads, nothing leaves the page,
the page fits a phone's width, and a screenshot is taken."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.synthetic import write_planted_run
from tests.chromium import CHROMIUM
from tests.chromium import run as _chromium
from tests.conftest import REPO

FIGURES = 5
# Runs in the page on load and reports through the document title (read back with --dump-dom).
PROBE = """<script>
addEventListener('load', () => {
  const imgs = [...document.images];
  const result = 'PROBE ' + JSON.stringify({
    images: imgs.length,
    loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    overflow: document.documentElement.scrollWidth > innerWidth,
    width: innerWidth});
  document.title = result;
  if (parent !== window) parent.postMessage(result, '*');
});
</script>"""
# Headless Chromium's window is at least 500 px wide: a phone-sized viewport is an iframe.
PHONE = """<!doctype html><title>waiting</title>
<script>addEventListener('message', e => { document.title = e.data; });</script>
<iframe src="{src}" style="width:{width}px;height:3000px;border:0"></iframe>"""

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (make setup)")


def _probe(tmp: Path, report: Path, width: int = 1280) -> dict:
    """Load a copy of the report with PROBE added (its CSP removed, so that the probe can run and any
    fetch would reach the network stack), `width` px wide, and read the result."""
    html = report.read_text()
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    probed = tmp / f"probed-{width}.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"))
    page = probed
    if width < 500:
        page = tmp / f"phone-{width}.html"
        page.write_text(PHONE.replace("{src}", probed.name).replace("{width}", str(width)))
    netlog = tmp / f"netlog-{width}.json"
    dom = _chromium(tmp, page.as_uri(), "--dump-dom", "--virtual-time-budget=5000", f"--log-net-log={netlog}")
    found = re.search(r"<title>PROBE (\{.*?\})</title>", dom)
    assert found, dom[:500]
    return json.loads(found.group(1)) | {"urls": _urls(netlog)}


def _urls(netlog: Path) -> set[str]:
    """URLs the page (not the browser's own services) asked the network stack for, from Chromium's NetLog.

    A page's requests carry its file:// top-frame site in their network isolation key; the browser's
    background requests (component updates, time sync) carry none. All of them reach only the dead
    proxy at 127.0.0.1:9."""
    text = netlog.read_text().rstrip()
    if not text.endswith("}"):  # Chromium may leave the events array unterminated on exit
        text = text.rstrip(",") + "]}"
    log = json.loads(text)
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return {
        e["params"]["url"]
        for e in log["events"]
        if e["type"] == start_job
        and "url" in e.get("params", {})
        and e["params"].get("network_isolation_key", "").startswith("file://")
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = write_planted_run(tmp_path_factory.mktemp("runs") / "planted")
    subprocess.run(
        [sys.executable, "-m", "reports", str(run)], check=True, capture_output=True, cwd=REPO, timeout=120
    )
    return run / "report.html"


def test_every_figure_loads_and_nothing_leaves_the_page(report: Path, tmp_path: Path) -> None:
    got = _probe(tmp_path, report)
    assert (got["images"], got["loaded"]) == (FIGURES, FIGURES)
    assert {u for u in got["urls"] if not u.startswith("file:")} == set()
    assert not got["overflow"]


def test_fits_a_phone(report: Path, tmp_path: Path) -> None:
    got = _probe(tmp_path, report, 360)
    assert got["width"] == 360 and got["loaded"] == FIGURES
    assert not got["overflow"]  # wide tables scroll inside their box; the page itself does not


def test_screenshot_of_the_unmodified_report(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    _chromium(tmp_path, report.as_uri(), f"--screenshot={shot}", "--virtual-time-budget=5000", height=3000)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 3000)
    assert len(png) > 100_000  # figures and tables rendered, not a blank page


def test_probe_detects_a_missing_figure_and_a_network_request(report: Path, tmp_path: Path) -> None:
    """Control: the probe is able to fail. A broken image and a remote image are both caught."""
    broken = tmp_path / "broken.html"
    html = report.read_text().replace('src="data:image/png;base64,', 'src="data:image/png;base64,AAAA', 1)
    broken.write_text(
        html.replace("</main>", '<img src="http://cdn.example.invalid/x.png" alt="remote"></main>')
    )
    got = _probe(tmp_path, broken)
    assert got["images"] == FIGURES + 1 and got["loaded"] == FIGURES - 1
    assert any("cdn.example.invalid" in u for u in got["urls"])  # went only to the dead proxy on 127.0.0.1:9
