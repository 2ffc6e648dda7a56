"""Compare runs side by side: one row per run (settings + metrics) and charts by setting."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.versions import describe
from reports.analysis import DEFINITIONS, analyse
from reports.build import write_report
from reports.figures import bar_chart
from reports.html import environment, flatten, fmt
from reports.load import load_run
from reports.stats import spread

METRICS: tuple[tuple[str, str], ...] = (
    ("queries", "queries"),
    ("dropped", "dropped"),
    ("drop_rate", "drop rate"),
    ("max_stall_ms", "max stall (ms)"),
    ("failover_window_ms", "failover window (ms, worst fault)"),
    ("median_window_ms", "failover window (ms, median over faults)"),
    ("window_ci", "95 % CI of that median (ms)"),
    ("faults", "faults (n)"),
    ("failed", "failed in fault spans"),
    ("detection_ms", "detection (ms, slowest fault)"),
    ("blackholed_ports", "black-holed ports"),
)


def run_row(run_dir: Path) -> dict[str, Any]:
    """One run's settings and metrics as a flat row (worst fault for per-fault metrics).

    Writes the run's own report.html when it has none yet, so that the comparison can link to it."""
    run = load_run(run_dir)
    analysis = analyse(run.queries, run.events, run.ipvs, run.meta)
    s = write_report(run, analysis) if not (run.path / "report.html").is_file() else analysis.summary()
    faults = s["faults"]
    detections = [f["detection_ms"] for f in faults if f["detection_ms"] is not None]
    windows = spread(f["failover_window_ms"] for f in faults)
    return {
        "run_id": run.run_id,
        "path": str(run.path),
        "experiment": run.meta.get("experiment", ""),
        "guest": describe(run.meta.get("guest")),
        "settings": dict(flatten(run.meta.get("settings") or {})),
        "lab": dict(flatten(run.meta.get("lab") or {})),
        "queries": s["queries"],
        "dropped": s["dropped"],
        "drop_rate": s["drop_rate"],
        "max_stall_ms": s["max_stall_ms"],
        "failover_window_ms": windows["max"],
        "median_window_ms": windows["median"],
        "window_ci": "–".join(fmt(x) for x in windows["ci"]) if windows["ci"] else "–",
        "faults": len(faults),
        "failed": sum(f["failed"] for f in faults) if faults else None,
        "detection_ms": max(detections) if detections else None,
        "blackholed_ports": sum(f["blackholed_ports"] for f in faults) if faults else None,
    }


def varied_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Setting keys whose values differ between runs (all keys when only one run)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row["settings"] if k not in keys]
    if len(rows) < 2:
        return keys
    return [k for k in keys if len({row["settings"].get(k) for row in rows}) > 1]


def differing_lab_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Lab config keys that differ between runs (other than the source file)."""
    keys = sorted({k for row in rows for k in row["lab"] if k != "source"})
    return [k for k in keys if len({row["lab"].get(k) for row in rows}) > 1]


def label(row: dict[str, Any], keys: Sequence[str]) -> str:
    """A run's chart label: its varied settings, else its experiment and id."""
    parts = [f"{k}={row['settings'].get(k, '-')}" for k in keys]
    return ", ".join(parts) if parts else f"{row['experiment']} {row['run_id']}".strip()


def comparison_context(rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    """What compare.html.j2 shows; links are relative to `out_dir`."""
    keys = varied_keys(rows)
    lab_keys = differing_lab_keys(rows)
    labels = [label(r, keys) for r in rows]
    charts = [
        {
            "title": title,
            "data_uri": bar_chart(
                labels, [r[key] for r in rows], title=title + " by setting", value_label=unit
            ),
        }
        for key, title, unit in (
            ("failover_window_ms", "Failover window", "failover window, worst fault (ms)"),
            ("dropped", "Dropped queries", "dropped queries (timeouts)"),
            ("max_stall_ms", "Max stall", "max stall (ms)"),
        )
    ]
    table = [
        {
            "run_id": r["run_id"],
            "href": os.path.relpath(Path(r["path"]).resolve() / "report.html", out_dir.resolve()),
            "experiment": r["experiment"],
            "guest": r["guest"],
            "settings": [r["settings"].get(k, "-") for k in keys],
            "lab": [r["lab"].get(k, "-") for k in lab_keys],
            "metrics": [r[m] if isinstance(r[m], str) else fmt(r[m], 3) if m == "drop_rate" else fmt(r[m])
                        for m, _ in METRICS],
        }
        for r in rows
    ]
    definitions = [(name, DEFINITIONS.get(m, "")) for m, name in METRICS if DEFINITIONS.get(m)]
    return {
        "rows": table,
        "setting_keys": keys,
        "lab_keys": lab_keys,
        "metric_names": [n for _, n in METRICS],
        "charts": charts,
        "definitions": definitions,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_comparison(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Analyse every run and write the comparison HTML to `out`."""
    rows = [run_row(Path(d)) for d in run_dirs]
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    context = comparison_context(rows, out_path.parent)
    out_path.write_text(environment().get_template("compare.html.j2").render(**context))
    return out_path
