"""End to end: `chaos run` (Chaos Toolkit) of kill-one, cut to 2 crashes, against the session's lab VM.

The dnslab control drives the run: the same run directory as `fab chaos` (records, events, IPVS
samples, meta, report), Chaos Toolkit's journal beside it, every fault rolled back, the lab healthy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from chaos import probes
from chaos.experiment import EXPERIMENTS_DIR

pytestmark = pytest.mark.e2e
CHAOS = Path(sys.executable).parent / "chaos"


def test_chaos_run_kill_one_leaves_the_fab_chaos_run_directory(lab_vm, conn, tmp_path):
    lab, _ = lab_vm
    text = (EXPERIMENTS_DIR / "kill-one.yaml").read_text()
    assert "times: 5," in text
    experiment = tmp_path / "kill-one.yaml"
    experiment.write_text(text.replace("times: 5,", "times: 2,"))
    runs = tmp_path / "runs"
    journal = tmp_path / "journal.json"
    res = subprocess.run([str(CHAOS), "--no-log-file", "run", str(experiment), "--rollback-strategy=always",
                          "--journal-path", str(journal)], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "DNSLAB_RUNS": str(runs)}, cwd=tmp_path)
    out = res.stdout + res.stderr
    ctk = json.loads(journal.read_text())
    assert ctk["status"] == "completed", out[-3000:]
    assert [r["activity"]["name"] for r in ctk["run"]] == [
        "kill_resolver rs2 #1", "restart_resolver rs2 #1", "kill_resolver rs3 #2", "restart_resolver rs3 #2"]
    assert all(r["status"] == "succeeded" for r in ctk["run"] + ctk["rollbacks"]) and ctk["rollbacks"]
    assert {p["activity"]["name"] for p in ctk["steady_states"]["before"]["probes"]} >= {"success ratio"}

    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    for name in ("queries.csv", "ipvs.csv", "events.jsonl", "meta.json", "journal.json", "ctk-journal.json",
                 "report.html", "summary.json", "keepalived.log"):
        assert (run_dir / name).is_file(), name
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["experiment"] == "kill-one" and meta["status"] == "completed" and meta["healthy_after"]
    events = pd.read_json(run_dir / "events.jsonl", lines=True)
    faults = events[events["kind"] == "fault"]
    assert list(faults["action"]) == ["kill_resolver", "kill_resolver"]
    assert list(faults["target"]) == ["rs2", "rs3"]
    # each pause counts from when the action before it ended: a restart 3 s or more after its crash, and
    # the next crash 5 s or more after the last (3 s span + 2 s settle), later by the actions' own time
    gaps = faults["t_ns"].diff().dropna() / 1e9
    assert ((gaps >= 5.0) & (gaps < 15.0)).all(), gaps
    restarts = events[events["action"] == "restart_resolver"]["t_ns"].to_numpy()
    spans = [(restarts[restarts > t].min() - t) / 1e9 for t in faults["t_ns"]]
    assert all(3.0 <= span < 8.0 for span in spans), spans
    assert json.loads((run_dir / "meta.json").read_text())["timing"]["slip_s"] > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    windows = [f["failover_window_ms"] for f in summary["faults"]]
    print(f"\nchaos run kill-one x2: failover windows {windows} ms")
    assert len(windows) == 2 and all(0 < w < 6000 for w in windows)
    assert probes.health(conn, lab)["ok"]
