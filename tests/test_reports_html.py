"""report.html, the JSON summary on stdout, the comparison report and the run index."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.synthetic import PLANTED, meta_for, planted_queries, write_planted_run, write_run
from reports.cli import latest_run, report_latest
from reports.index import Section, write_index
from tests.conftest import REPO

SUMMARY_KEYS = {"queries", "ok", "dropped", "drop_rate", "max_stall_ms", "faults"}
FAULT_KEYS = {"action", "target", "t_ns", "failover_window_ms", "failed", "detection_ms"}
FIGURES = ("answers", "latency", "raster", "weights", "histogram")
GUEST = "Debian bookworm · kernel 6.1.0-synthetic · Keepalived 2.2.7 · Unbound 1.17.1 · ipvsadm 1.31"


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    run = write_planted_run(tmp_path_factory.mktemp("runs") / "planted")
    result = subprocess.run(
        [sys.executable, "-m", "reports", str(run)], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return run, json.loads(result.stdout), (run / "report.html").read_text()


def test_cli_prints_the_contract_summary(reported) -> None:
    _, summary, _ = reported
    assert set(summary) >= SUMMARY_KEYS
    assert all(set(f) >= FAULT_KEYS for f in summary["faults"])
    assert summary["max_stall_ms"] == PLANTED["max_stall_ms"]
    assert [f["failover_window_ms"] for f in summary["faults"]] == [490.0, 1990.0, 570.0]


def test_report_embeds_every_figure_and_fetches_nothing(reported) -> None:
    _, _, html = reported
    for key in FIGURES:
        assert re.search(
            rf'<figure id="fig-{key}">\s*<img src="data:image/png;base64,[A-Za-z0-9+/=]{{1000,}}"', html
        )
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html


def test_report_shows_settings_numbers_definitions_and_verdicts(reported) -> None:
    _, _, html = reported
    for text in (
        "492.000",
        "1,990.000",
        "500.000",  # max stall, failover window, detection in the load's protocol
        "udp 500.0 · tcp 1,200.0",  # detection by protocol
        "largest gap between consecutive answer times",
        "check.delay_loop",
        "network.vip",
        "192.168.100.100",
        "answers_from_every_resolver",
        'class="fail">fail',
        'class="pass">pass',
        "SERVFAIL",
        "40000",
        'name="viewport"',
        GUEST,  # the guest's release and versions (meta.json `guest`)
    ):
        assert text in html, text


def test_report_without_faults_or_verdicts(tmp_path: Path) -> None:
    steady = [r for r in planted_queries() if r["t_send_ns"] < 1_767_225_601_000_000_000]
    run = write_run(tmp_path / "steady", {"run_id": "steady"}, steady, [], [])
    result = subprocess.run(
        [sys.executable, "-m", "reports", str(run)], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["faults"] == []
    html = (run / "report.html").read_text()
    assert "This run has no fault events" in html and "No steady-state verdicts" in html
    assert html.count('<img src="data:image/png;base64,') == len(FIGURES)


def test_compare_has_a_row_per_run_with_its_settings(tmp_path: Path) -> None:
    runs = [
        write_planted_run(
            tmp_path / "runs" / f"cell-{v}", f"cell-{v}", {"expire_nodest_conn": v, "socket_mode": "reuse"}
        )
        for v in (0, 1)
    ]
    out = tmp_path / "compare.html"
    result = subprocess.run(
        [sys.executable, "-m", "reports", "compare", *map(str, runs), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    header = html.split("<table>")[1].split("</tr>")[0]
    assert "<th>expire_nodest_conn</th>" in header and "socket_mode" not in header  # only varied settings
    assert "<th>guest</th>" in header and html.count(f"<td>{GUEST}</td>") == 2
    assert html.count('href="runs/cell-') == 2
    assert all((run / "report.html").is_file() for run in runs)  # written so that the links work
    assert html.count('<img src="data:image/png;base64,') == 3
    assert "1,990.0" in html  # the worst fault's failover window


def test_fab_report_takes_the_latest_run_and_refreshes_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "runs"
    monkeypatch.setenv("DNSLAB_RUNS", str(base))
    write_run(
        base / "b-run",
        meta_for("b-run", "steady", start_ns=1_800_000_000_000_000_000),
        planted_queries()[:50],
        [],
        [],
    )
    latest = write_planted_run(base / "a-run", "a-run")
    os.utime(latest / "queries.csv", (2_000_000_000, 2_000_000_000))
    assert report_latest() == latest / "report.html"
    assert json.loads(capsys.readouterr().out)["queries"] == 600
    html = (tmp_path / "index.html").read_text()
    assert html.index("b-run") < html.index("a-run")  # newest start first
    assert 'href="runs/a-run/report.html"' in html and "(no report yet)" in html
    assert "492.0" in html


def test_index_sections_come_above_the_run_list(tmp_path: Path) -> None:
    write_planted_run(tmp_path / "runs" / "a-run", "a-run")
    out = write_index(
        tmp_path / "runs", tmp_path / "index.html", [Section("Answers", "<p id='answers'>42</p>")]
    )
    html = out.read_text()
    assert html.index("<p id='answers'>42</p>") < html.index("<h2>Runs</h2>") < html.index("a-run")
    assert f"Measured on <code>{GUEST}</code>." in html  # the page says which release answered


def test_latest_run_and_no_runs(tmp_path: Path) -> None:
    from lab.model.errors import LabError

    with pytest.raises(LabError, match="no run directories"):
        latest_run(tmp_path)
    first = write_planted_run(tmp_path / "first")
    second = write_run(tmp_path / "second", {}, planted_queries()[:5], [], [])
    os.utime(second / "queries.csv", (2_000_000_000, 2_000_000_000))
    assert latest_run(tmp_path) == second
    os.utime(first / "queries.csv", (2_000_000_001, 2_000_000_001))
    assert latest_run(tmp_path) == first
