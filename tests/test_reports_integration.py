"""The report on real records: the Locust DNS user against a real Unbound that is frozen for a second."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.loadtest import free_port, start_unbound
from lab.model.parse import load_lab
from tests.conftest import REPO

pytestmark = pytest.mark.integration

ADDRESS = "127.0.0.87"
PAUSE_S = 1.0
TIMEOUT_MS = 100


def _wait_for_records(directory: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.stat().st_size > 200 for p in directory.glob("*.dq")):
            return
        time.sleep(0.05)
    raise AssertionError("the load generator flushed no records")


@pytest.fixture(scope="module")
def paused_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """A run directory: 2 users at 400 queries/s, Unbound SIGSTOPped for PAUSE_S (fault) then SIGCONTed."""
    work = tmp_path_factory.mktemp("paused")
    port = free_port(ADDRESS)
    unbound = start_unbound(work, ADDRESS, port, name="rs1")
    records, run = work / "records", work / "run"
    run.mkdir()
    locust = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(REPO / "loadtest" / "dns.py"),
        "--headless",
        "--host",
        f"{ADDRESS}:{port}",
        "-t",
        "5s",
        "-u",
        "2",
        "-r",
        "2",
        "--dns-rate",
        "400",
        "--dns-timeout-ms",
        str(TIMEOUT_MS),
        "--dns-records",
        str(records),
        "--loglevel",
        "WARNING",
    ]
    load = subprocess.Popen(locust, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_records(records)
        time.sleep(1.0)
        stopped = time.time_ns()
        os.kill(unbound.pid, signal.SIGSTOP)
        time.sleep(PAUSE_S)
        resumed = time.time_ns()
        os.kill(unbound.pid, signal.SIGCONT)
        assert load.wait(timeout=60) in (0, 1), load.stderr.read()
    finally:
        os.kill(unbound.pid, signal.SIGCONT)
        if load.poll() is None:
            load.kill()
            load.wait()
        unbound.terminate()
        unbound.wait(timeout=10)
    shutil.copy(records / "queries.csv", run / "queries.csv")
    events = [
        {"t_ns": stopped, "kind": "fault", "action": "pause", "target": "rs1", "detail": {"signal": "STOP"}},
        {
            "t_ns": resumed,
            "kind": "rollback",
            "action": "resume",
            "target": "rs1",
            "detail": {"signal": "CONT"},
        },
    ]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run / "meta.json").write_text(
        json.dumps(
            {
                "run_id": "paused",
                "experiment": "pause-one",
                "lab": load_lab().as_dict(),
                "settings": {"pause_s": PAUSE_S},
            }
        )
    )
    return run, stopped, resumed


def test_report_of_a_frozen_resolver(paused_run: tuple[Path, int, int]) -> None:
    run, stopped, resumed = paused_run
    result = subprocess.run(
        [sys.executable, "-m", "reports", str(run)], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    pause_ms = (resumed - stopped) / 1e6
    (fault,) = summary["faults"]
    # Every query sent while Unbound was frozen times out; the last of them went out just before SIGCONT
    # (at most a timeout earlier, for a query whose answer came after SIGCONT but too late).
    assert fault["failed"] >= 0.8 * 400 * PAUSE_S
    assert pause_ms - TIMEOUT_MS - 50 <= fault["failover_window_ms"] <= pause_ms
    # No answer arrives while frozen: the longest gap between answers spans the pause.
    assert pause_ms - 50 <= summary["max_stall_ms"] <= pause_ms + 300
    assert fault["max_stall_ms"] == summary["max_stall_ms"]
    assert fault["detection_ms"] is None  # no IPVS in this run
    assert summary["dropped"] >= fault["failed"]  # the frozen server drops; it never refuses
    assert summary["answers_by_resolver"].keys() == {"rs1"}
    assert (run / "report.html").stat().st_size > 50_000
