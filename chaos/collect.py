"""After a run: fetch its records from the guest, merge them into queries.csv, judge the steady-state
hypothesis on them and build meta.json (docs/run-directory.md)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from chaos import probes
from chaos.experiment import Experiment
from chaos.journal import utc_iso
from lab.ssh import remote

FETCHED = ("ipvs.csv", "locust.log", "sampler.log", probes.DETECT_FILE)  # besides records/*.dq


def fetch(conn: Any, remote_dir: str, run_dir: Path) -> None:
    """Copy ipvs.csv, the load generator's records and the probes' logs from the guest."""
    files = remote.run(conn, f"cd {shlex.quote(remote_dir)} && ls").stdout.split()
    records = run_dir / "records"
    records.mkdir(exist_ok=True)
    for name in FETCHED:
        if name in files:
            remote.get(conn, f"{remote_dir}/{name}", (run_dir if name == "ipvs.csv" else records) / name)
    fetch_records(conn, f"{remote_dir}/records", records)


def fetch_records(conn: Any, remote_records: str, local: Path) -> None:
    """Copy the load generator's record files (*.dq) from `remote_records` into `local`."""
    for name in remote.run(conn, f"ls {shlex.quote(remote_records)}").stdout.split():
        if name.endswith(".dq"):
            remote.get(conn, f"{remote_records}/{name}", local / name)


def merge_records(records: Path, out: Path) -> tuple[int | None, str | None]:
    """Merge record files into `out` (queries.csv) with loadtest.merge, in a process of its own (it
    needs memory while sorting); (the rows written, or None; the error, or None)."""
    merged = subprocess.run([sys.executable, "-m", "loadtest.merge", str(records), "--out", str(out)],
                            capture_output=True, text=True)
    rows = re.match(r"(\d+) queries -> ", merged.stdout)
    error = None if merged.returncode == 0 else " ".join(merged.stderr.split())[-300:]
    return (int(rows.group(1)) if rows else None), error


def evaluate(exp: Experiment, records: Any) -> dict[str, dict[str, Any]]:
    """Each steady-state probe's value over a window of records against its tolerance, by probe name."""
    out = {}
    for tol in exp.hypothesis:
        value = tol.call.resolve()(records, **tol.call.arguments)
        out[tol.name] = {"ok": tol.low <= value <= tol.high, "value": round(value, 6),
                         "tolerance": [tol.low, tol.high]}
    return out


def steady_state(exp: Experiment, queries: Path, marks: dict[str, int]
                 ) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """The hypothesis over the records before the method and at the end of recovery: (the verdicts
    by window, the windows in guest ns). Nothing to judge without a hypothesis or records."""
    if not exp.hypothesis or not queries.exists():
        return {}, {}
    import pandas as pd

    records = pd.read_csv(queries)
    w = int(exp.window_s * 1e9)
    before_end = marks.get("method_start", marks["recover_end"])
    end = marks["recover_end"]
    windows = {"before": (before_end - w, before_end), "after": (end - w, end)}
    verdicts = {name: evaluate(exp, probes.window(records, lo, hi)) for name, (lo, hi) in windows.items()}
    return verdicts, {name: [lo, hi] for name, (lo, hi) in windows.items()}


def meta(run: Any, steady: dict[str, Any], after: dict[str, Any], tools: dict[str, str],
         guest: dict[str, str]) -> dict[str, Any]:
    """meta.json of a run (chaos.runner.Run) that has finished; `tools` (each tool's version line) from
    lab.versions.tool_banners, `guest` (release and versions) from lab.versions.guest_versions."""
    exp = run.exp
    first_t = min((e["t_ns"] for e in run.events), default=None)
    last_t = max((e["t_ns"] for e in run.events), default=None)
    return {
        "run_id": run.run_id, "experiment": exp.name, "title": exp.title,
        "description": exp.description, "lab": run.lab.as_dict(), "settings": run.settings,
        "tools": tools, "guest": guest, "kernel": guest.get("kernel", ""),
        "start": utc_iso(first_t), "end": utc_iso(last_t),
        "status": run.status,
        "steady_state": steady, "steady_state_windows_ns": run.windows,
        "healthy_after": after["ok"], "errors": run.errors, "queries_rows": run.query_rows,
        "timing": {"warmup_s": exp.timing.warmup_s, "steady_s": exp.timing.steady_s,
                   "recover_s": exp.timing.recover_s,
                   "slip_s": round(run.pace.slip_s, 3)},  # how far the actions ran past their slots
        **({"incomplete": run.incomplete} if run.incomplete else {}),
    }
