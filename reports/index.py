"""reports/index.html: every run, newest first, with links and headline numbers.

Other parts (the demo's answers page) add their own sections above the list:
`write_index(runs, out, sections=[Section("Answers", html)])`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.versions import describe
from reports.html import environment, flatten, fmt

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class Section:
    """A block shown above the run list: a heading and trusted HTML (already escaped by its author)."""

    title: str
    html: str


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_entries(runs_dir: Path, out_dir: Path) -> list[dict[str, Any]]:
    """One entry per run directory (one holding meta.json or queries.csv), newest first.

    Headline numbers come from summary.json (written with report.html); links are relative to `out_dir`."""
    entries = []
    dirs = [p for p in runs_dir.iterdir() if p.is_dir()] if runs_dir.is_dir() else []
    for path in dirs:
        if not ((path / "meta.json").is_file() or (path / "queries.csv").is_file()):
            continue
        meta, summary = _json(path / "meta.json"), _json(path / SUMMARY_FILE)
        faults = summary.get("faults") or []
        report = path / "report.html"
        entries.append(
            {
                "run_id": meta.get("run_id") or path.name,
                "title": meta.get("title") or "",
                "experiment": meta.get("experiment") or "",
                "start": meta.get("start") or "",
                "guest": describe(meta.get("guest")),
                "settings": ", ".join(f"{k}={v}" for k, v in flatten(meta.get("settings") or {})),
                "href": os.path.relpath(report.resolve(), out_dir.resolve()) if report.is_file() else None,
                "queries": fmt(summary.get("queries")),
                "dropped": fmt(summary.get("dropped")),
                "max_stall_ms": fmt(summary.get("max_stall_ms")),
                "failover_window_ms": fmt(
                    max((f.get("failover_window_ms") or 0.0 for f in faults), default=None)
                ),
                "sort": (meta.get("start") or "", path.stat().st_mtime),
            }
        )
    return sorted(entries, key=lambda e: e["sort"], reverse=True)


def render_index(
    entries: list[dict[str, Any]], sections: Sequence[Section] = (), title: str = "dnslab runs"
) -> str:
    """index.html's text: `sections` first, then the run list."""
    return (
        environment()
        .get_template("index.html.j2")
        .render(
            title=title,
            sections=sections,
            entries=entries,
            guests=sorted({e["guest"] for e in entries if e.get("guest")}),
            generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    )


def write_index(
    runs_dir: str | Path, out: str | Path, sections: Sequence[Section] = (), title: str = "dnslab runs"
) -> Path:
    """Write the index of every run under `runs_dir` to `out`; return its path."""
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(render_index(run_entries(Path(runs_dir), out_path.parent), sections, title))
    return out_path
