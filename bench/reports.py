"""Benchmark: analyse a synthetic run of N query rows (default 10 million); print wall time and peak RSS.

    python -m bench.reports [--rows N] [--figures] [--keep DIR]

The analysis runs in a child process so its peak RSS is its own. The reference measured in the same
run is a bare pyarrow read of the same queries.csv (the I/O floor); the ratio says what the
validation and analysis cost on top of it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

LIMIT_S = 60.0
LIMIT_GIB = 4.0


def peak_rss_gib() -> float:
    """This process's own peak resident set (VmHWM; ru_maxrss would include the parent's at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc/self/status")


def reference_read(run_dir: Path) -> dict[str, float]:
    """In a child: the reference, a bare pyarrow read of queries.csv with inferred types."""
    from pyarrow import csv

    t = time.perf_counter()
    rows = csv.read_csv(run_dir / "queries.csv").num_rows
    return {"reference_read_s": time.perf_counter() - t, "rows": float(rows)}


def analyse_once(run_dir: Path, figures: bool) -> dict[str, float]:
    """In a child: load + analyse (+ figures), return timings."""
    from reports.analysis import analyse
    from reports.load import load_run

    t = time.perf_counter()
    run = load_run(run_dir)
    loaded = time.perf_counter() - t
    analysis = analyse(run.queries, run.events, run.ipvs, run.meta)
    analysed = time.perf_counter() - t
    out = {"load_s": loaded, "load_analyse_s": analysed, "rows": float(analysis.queries)}
    if figures:
        from reports.figures import render_figures
        from reports.html import render_report

        t2 = time.perf_counter()
        (run_dir / "report.html").write_text(render_report(run, analysis, render_figures(run, analysis)))
        out["figures_html_s"] = time.perf_counter() - t2
    return out


def run_child(run_dir: Path, flags: list[str]) -> tuple[dict[str, float], float]:
    """Run this module as a child on `run_dir`: (its JSON result, wall seconds)."""
    cmd = [sys.executable, "-m", "bench.reports", "--child", str(run_dir), *flags]
    t = time.perf_counter()
    child = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if child.returncode:
        raise SystemExit(f"benchmark child failed:\n{child.stderr.strip()}")
    return json.loads(child.stdout), wall


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--figures", action="store_true", help="also render the figures and report.html")
    p.add_argument("--keep", type=Path, default=None, help="write (or reuse) the synthetic run here")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    opts = p.parse_args()
    if opts.child:
        result = reference_read(opts.child) if opts.reference else analyse_once(opts.child, opts.figures)
        print(json.dumps(result | {"peak_rss_gib": peak_rss_gib()}))
        return 0
    from bench.synthetic import write_bulk_run

    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="dnslab-bench-") as tmp:
        run_dir = opts.keep or Path(tmp) / "bulk"
        if not (run_dir / "queries.csv").is_file():
            with console.status(f"writing a synthetic run of {opts.rows:,} rows to {run_dir}"):
                t = time.perf_counter()
                write_bulk_run(run_dir, opts.rows)
                console.log(
                    f"generated in {time.perf_counter() - t:.1f} s "
                    f"({(run_dir / 'queries.csv').stat().st_size / 2**20:,.0f} MiB CSV)"
                )
        with console.status("analysing in a child process"):
            inner, wall = run_child(run_dir, ["--figures"] * opts.figures)
        with console.status("reference: bare CSV read in a child process"):
            reference, _ = run_child(run_dir, ["--reference"])
    inner["reference_read_s"] = reference["reference_read_s"]
    peak_gib, ref_peak_gib = inner["peak_rss_gib"], reference["peak_rss_gib"]
    ok = wall < LIMIT_S and peak_gib < LIMIT_GIB
    print(f"rows                      {int(inner['rows']):,}")
    print(f"wall time (child, total)  {wall:.2f} s   (limit {LIMIT_S:.0f} s)")
    print(f"  load + validate         {inner['load_s']:.2f} s")
    print(f"  load + analyse          {inner['load_analyse_s']:.2f} s")
    if "figures_html_s" in inner:
        print(f"  figures + html          {inner['figures_html_s']:.2f} s")
    print(
        f"reference: bare CSV read  {inner['reference_read_s']:.2f} s   "
        f"(load+analyse / reference = {inner['load_analyse_s'] / inner['reference_read_s']:.2f}x)"
    )
    print(
        f"peak RSS (child)          {peak_gib:.2f} GiB   (limit {LIMIT_GIB:.0f} GiB; "
        f"reference read alone {ref_peak_gib:.2f} GiB)"
    )
    print("within limits" if ok else "OVER LIMITS")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
