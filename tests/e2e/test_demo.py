"""End to end: `fab demo` on the session VM with the short suite, asserted on the answers page.

The demo is the session fixture `quick_demo` (tests/e2e/conftest.py), shared with test_chaos. Every
seed question must be on the page with a number taken from this run's data.
Set DNSLAB_UPDATE_DOCS=1 to refresh the README's screenshot (docs/answers.png) from this run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from reports.answers import QUESTIONS
from tests.chromium import CHROMIUM
from tests.chromium import run as chromium
from tests.conftest import REPO

pytestmark = pytest.mark.e2e


def test_demo_finishes_and_prints_its_stage_times(quick_demo):
    proc, page = quick_demo
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("image", "up", "deploy", "sysctl probe", "checks probe", "experiments", "answers", "total"):
        assert re.search(rf"│ {stage}\s*│\s*\d+ │", proc.stderr), stage
    assert f"answers: {page}" in proc.stdout
    assert page.is_file()


def _section(html: str, question: str) -> str:
    start = html.index(question)
    end = html.find("<h2>", start)
    return html[start:end]


def test_every_question_is_answered_with_this_runs_numbers(quick_demo):
    _, page = quick_demo
    html = page.read_text()
    matrix = next(page.parent.glob("matrix/*-quick/matrix.json"))
    cells = json.loads(matrix.read_text())["cells"]
    assert [c["status"] for c in cells] == ["completed", "completed"]
    run_ids = [Path(c["run_dir"]).name for c in cells]
    summaries = [json.loads((Path(c["run_dir"]) / "summary.json").read_text()) for c in cells]
    for key, question in QUESTIONS.items():
        text = _section(html, question)
        assert "Not measured in this suite" not in text, key
        assert re.search(r"<b>\d+ ms</b>|class=\"num\">\d", text), f"{key}: no number"
        if key != "sysctl":
            assert any(run_id in text for run_id in run_ids), f"{key}: links no run of this demo"
    burp = _section(html, QUESTIONS["burp"])
    medians = [s["fault_stats"][s["faults"][0]["action"]]["failover_window_ms"]["median"]
               for s in summaries]
    windows = {f"<b>{m:.0f} ms</b>" for m in medians}
    assert any(w in burp for w in windows), (windows, burp[:500])
    check = _section(html, QUESTIONS["check"])
    cost = json.loads(next(page.parent.glob("runs/*-check-cost/probe_check_cost.json")).read_text())
    nslookup = cost["summary"]["kinds"]["nslookup"]
    assert f"A MISC_CHECK with nslookup costs {nslookup['cpu_ms']:.3g} ms of CPU" in check
    sysctl = _section(html, QUESTIONS["sysctl"])
    assert re.search(r"of the (\d+) net.ipv4.vs.\* sysctls", sysctl)
    assert "<code>/etc/keepalived/keepalived.conf</code>" in html


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (make setup)")
def test_answers_page_renders_offline(quick_demo, tmp_path):
    _, page = quick_demo
    shot = tmp_path / "answers.png"
    chromium(tmp_path, page.as_uri(), f"--screenshot={shot}", "--virtual-time-budget=3000",
             width=1100, height=1800)
    assert shot.stat().st_size > 20_000
    if os.environ.get("DNSLAB_UPDATE_DOCS") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copy(shot, REPO / "docs" / "answers.png")
