"""Write a run's report: report.html (figures embedded) and summary.json beside the records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.local.atomic import write_atomic
from reports.analysis import Analysis, analyse
from reports.figures import render_figures
from reports.html import render_report
from reports.index import SUMMARY_FILE
from reports.load import Run, load_run


def write_report(run: Run, analysis: Analysis, journal: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write RUN_DIR/report.html and RUN_DIR/summary.json for an analysed run; return the summary."""
    page = render_report(run, analysis, render_figures(run, analysis), journal)
    write_atomic(run.path / "report.html", page)
    summary = analysis.summary()
    write_atomic(run.path / SUMMARY_FILE, json.dumps(summary, indent=2))
    return summary


def build_report(run_dir: str | Path, journal: str | Path | None = None) -> dict[str, Any]:
    """Load, check and analyse a run directory, then write its report (with Chaos Toolkit's journal:
    `journal`, else RUN_DIR/ctk-journal.json when there is one); return the JSON summary."""
    from reports.ctk_journal import find_journal

    ctk = find_journal(Path(run_dir), Path(journal) if journal is not None else None)
    run = load_run(run_dir)
    return write_report(run, analyse(run.queries, run.events, run.ipvs, run.meta), ctk)
