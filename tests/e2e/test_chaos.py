"""End to end: one short chaos experiment in the lab VM, asserted on what was measured; then a run
interrupted by SIGINT during the fault, which must still roll back and keep its data.

Shares the session VM (tests/e2e/conftest.py). Leaves the stack deployed with the lab's settings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from chaos import probes
from chaos.execute import run_experiment
from lab.ops.deploy import deploy
from lab.ssh.endpoint import connect

pytestmark = pytest.mark.e2e
TCG_SLACK_S = 3.0  # check timers stretch under TCG (two emulated cores shared with the load)


@pytest.fixture(scope="module")
def deployed(lab_vm):
    """The stack deployed with the lab's own settings (idempotent: quick when already there)."""
    lab, endpoint = lab_vm
    with connect(endpoint) as conn:
        summary = deploy(lab, conn, verbose=False)
    assert not summary.failed, summary.error
    return lab


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DNSLAB_RUNS", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def quick(quick_demo) -> tuple[Path, list[dict]]:
    """The `quick` suite (kill-one with fresh and reused source ports) that the session's demo ran:
    (comparison report, cells)."""
    proc, page = quick_demo
    assert proc.returncode == 0, proc.stderr[-3000:]
    matrix = next(page.parent.glob("matrix/*-quick/matrix.json"))
    return matrix.parent / "comparison.html", json.loads(matrix.read_text())["cells"]


def events_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def test_quick_suite_runs_its_cells_and_compares_them(quick):
    report, cells = quick
    assert [c["status"] for c in cells] == ["completed", "completed"]
    assert [c["settings"]["load.socket_mode"] for c in cells] == ["fresh", "reuse"]
    html = report.read_text()
    assert report.name == "comparison.html" and "reuse" in html and "<img" in html
    for cell in cells:
        meta = json.loads((Path(cell["run_dir"]) / "meta.json").read_text())
        assert meta["settings"]["load.socket_mode"] == cell["settings"]["load.socket_mode"]


def test_kill_one_end_to_end(quick, deployed, conn):
    lab = deployed
    run_dir = Path(quick[1][0]["run_dir"])  # the fresh-port cell
    for name in ("meta.json", "journal.json", "events.jsonl", "ipvs.csv", "queries.csv", "keepalived.log"):
        assert (run_dir / name).is_file(), name

    rs2 = lab.resolver("rs2").real_server
    events = events_of(run_dir)
    kill = next(e for e in events if e["action"] == "kill_resolver")
    assert kill["kind"] == "fault" and kill["target"] == "rs2" and kill["detail"]["real_server"] == rs2
    restart = next(e for e in events if e["action"] == "restart_resolver")
    assert restart["kind"] == "rollback" and restart["t_ns"] > kill["t_ns"]

    ipvs = pd.read_csv(run_dir / "ipvs.csv")
    samples = sorted(ipvs.t_ns.unique())
    span_s = (samples[-1] - samples[0]) / 1e9
    assert len(samples) / span_s >= 10, f"{len(samples)} IPVS samples in {span_s:.1f} s"
    live = ipvs[(ipvs.real_server == rs2) & (ipvs.weight > 0)].groupby("t_ns").size()
    removed_at = next(t for t in samples if t >= kill["t_ns"] and t not in live.index)
    bound_s = lab.check.removal_bound_s + TCG_SLACK_S
    assert (removed_at - kill["t_ns"]) / 1e9 <= bound_s, "rs2 leaves the IPVS table within the bound"
    assert samples[-1] in live.index, "rs2 is back in the table at the end"

    queries = pd.read_csv(run_dir / "queries.csv")
    assert len(queries) > 1000
    kills_at = [e["t_ns"] for e in events if e["action"] == "kill_resolver"]
    span_ns = int((lab.check.removal_bound_s + 0.5) * 1e9)  # a fault fails queries until it is removed
    near = queries.t_send_ns.apply(lambda t: any(k <= t <= k + span_ns for k in kills_at))
    failing = queries.outcome != "ok"
    rate_near, rate_elsewhere = failing[near].mean(), failing[~near].mean()
    assert rate_near >= 0.1 and rate_near > rate_elsewhere, (
        f"failures cluster around the faults: {rate_near:.3f} near them, {rate_elsewhere:.4f} elsewhere")
    by_rs2 = queries[(queries.outcome == "ok") & (queries.resolver == "rs2")].t_send_ns
    assert (by_rs2 < kill["t_ns"]).any(), "rs2 answered before the kill"
    dead = by_rs2.between(kill["t_ns"] + int(0.1e9), restart["t_ns"])  # 0.1 s: `date` runs just before kill
    assert not dead.any(), "a killed rs2 answers nothing"
    assert (by_rs2 > restart["t_ns"]).any(), "rs2 serves again after its restart"

    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["experiment"] == "kill-one" and meta["healthy_after"] is True
    assert meta["start"].endswith("Z") and meta["lab"]["network"]["vip"] == str(lab.network.vip)
    verdicts = meta["steady_state"]["before"]
    assert set(verdicts) == {"success ratio", "p99 latency (ms)", "queries in the window"}

    summary = json.loads(subprocess.run([sys.executable, "-m", "reports", str(run_dir)], check=True,
                                        capture_output=True, text=True).stdout)
    fault = next(f for f in summary["faults"] if f["action"] == "kill_resolver")
    assert fault["detection_ms"] is not None and fault["detection_ms"] <= bound_s * 1000
    # a repeated fault (issue 13): five crashes rotating the resolver, with n, spread and an interval
    kills = [f for f in summary["faults"] if f["action"] == "kill_resolver"]
    assert [f["target"] for f in kills] == ["rs2", "rs3", "rs1", "rs2", "rs3"]
    stats = summary["fault_stats"]["kill_resolver"]
    window = stats["failover_window_ms"]
    assert stats["n"] == 5 and window["n"] == 5 and window["min"] <= window["median"] <= window["max"]
    low, high = window["ci"]
    assert window["min"] <= low <= window["median"] <= high <= window["max"]
    assert probes.health(conn, lab)["ok"]


def test_sigint_during_the_fault_rolls_back_and_keeps_the_data(deployed, conn, runs):
    lab = deployed

    def interrupt_after_the_fault() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            for path in runs.glob("*/events.jsonl"):
                if '"kind": "fault"' in path.read_text():
                    time.sleep(1.0)
                    os.kill(os.getpid(), signal.SIGINT)
                    return
            time.sleep(0.2)

    threading.Thread(target=interrupt_after_the_fault, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_experiment(lab, conn, "stop-one")
    (run_dir,) = list(runs.iterdir())
    events = events_of(run_dir)
    kinds = [(e["kind"], e["action"]) for e in events]
    assert ("fault", "stop_resolver") in kinds and ("rollback", "cont_resolver") in kinds
    assert ("rollback", "cont_resolver") not in kinds[:kinds.index(("fault", "stop_resolver"))]
    journal = json.loads((run_dir / "journal.json").read_text())
    assert journal["status"] == "interrupted"
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["healthy_after"] is True
    queries = pd.read_csv(run_dir / "queries.csv")
    stop = next(e for e in events if e["action"] == "stop_resolver")
    assert len(queries) > 0 and queries.t_send_ns.max() > stop["t_ns"], "records cover the fault"
    assert probes.health(conn, lab)["ok"], "the lab is healthy after the interrupted run"
