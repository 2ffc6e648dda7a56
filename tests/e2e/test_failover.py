"""End to end: removal on exit in the lab VM. A SIGKILLed resolver leaves IPVS the instant it exits
(Keepalived says so on its notify FIFO), and a lab whose every resolver died recovers when one comes
back. Shares the session VM (tests/e2e/conftest.py) and leaves lab.toml's settings deployed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from chaos import probes
from chaos.execute import run_experiment
from lab.ops.deploy import deploy
from lab.ssh.endpoint import connect

pytestmark = pytest.mark.e2e
ON = {"check": {"removal_on_exit": True}}
# The target on a quiet machine is a median <= 100 ms over ten crashes (`fab matrix --suite exit`);
# this bound only catches a removal that waits for the health check (about 1-2 s) on a loaded CI host.
WINDOW_BOUND_MS = 500.0


@pytest.fixture(scope="module")
def runs(lab_vm, tmp_path_factory):
    """Run directories of kill-one and all-down with removal on exit; lab.toml's settings put back."""
    lab, endpoint = lab_vm
    base = tmp_path_factory.mktemp("failover") / "runs"
    out = {}
    with pytest.MonkeyPatch.context() as mp, connect(endpoint) as conn:
        mp.setenv("DNSLAB_RUNS", str(base))
        try:
            for name in ("kill-one", "all-down"):
                out[name] = run_experiment(lab, conn, name, cell=ON)
        finally:
            assert not deploy(lab, conn, verbose=False).failed
    return out


def summary(run_dir: Path) -> dict:
    return json.loads(subprocess.run([sys.executable, "-m", "reports", str(run_dir)], check=True,
                                     capture_output=True, text=True).stdout)


def test_a_crash_leaves_ipvs_at_once_with_removal_on_exit(runs):
    run_dir = runs["kill-one"]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["lab"]["check"]["removal_on_exit"] is True and meta["healthy_after"] is True
    s = summary(run_dir)
    kill = next(f for f in s["faults"] if f["action"] == "kill_resolver")
    stats = s["fault_stats"]["kill_resolver"]  # five crashes: one slow moment is not the median
    assert stats["n"] == 5 and stats["failover_window_ms"]["median"] < WINDOW_BOUND_MS, stats
    detection = stats["detection_ms"]["median"]
    assert detection is not None and detection < WINDOW_BOUND_MS, stats
    # Keepalived's own word: a detect event for rs2 in the load's protocol, just before the sample
    assert kill["notify_detection_ms"] is not None, "Keepalived reported the removal on its FIFO"
    agree = stats["detection_ms"]["median"] - stats["notify_detection_ms"]["median"]
    assert abs(agree) <= 5 * s["ipvs_sample_interval_ms"], stats
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    said = [(e["action"], e["detail"]["proto"]) for e in events
            if e["kind"] == "detect" and e["target"] == "rs2"]
    assert ("rs_down", "udp") in said and ("rs_up", "udp") in said
    back = next(r for r in s["returns"] if r["action"] == "restart_resolver")
    assert back["readded_ms"] is not None, "rs2 went back into IPVS after its restart"
    keepalived = (run_dir / "keepalived.log").read_text()
    assert "tracked file dnslab_exit_rs2 now FAULT state" in keepalived


def test_all_resolvers_down_then_one_back_recovers(runs, lab_vm, conn):
    lab, _ = lab_vm
    run_dir = runs["all-down"]
    s = summary(run_dir)
    assert [f["target"] for f in s["faults"]] == ["rs1", "rs2", "rs3"]
    first = s["returns"][0]
    assert (first["action"], first["target"]) == ("restart_resolver", "rs1")
    assert first["first_answer_ms"] is not None and first["first_answer_ms"] < 10_000, first
    ipvs = pd.read_csv(run_dir / "ipvs.csv", keep_default_na=False)
    empty = ipvs[ipvs.real_server == ""]
    assert not empty.empty and (empty.weight == 0).all(), "every server gone shows as an empty row"
    queries = pd.read_csv(run_dir / "queries.csv")
    after = queries[queries.t_send_ns > first["t_ns"] + int(first["first_answer_ms"] * 1e6)]
    assert (after.outcome == "ok").mean() > 0.9, "answers come back once rs1 is back"
    assert json.loads((run_dir / "meta.json").read_text())["healthy_after"] is True
    assert probes.health(conn, lab)["ok"]
