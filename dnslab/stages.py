"""What every demo job is made of: named stages timed in order, the probes and the suites whose results
are remembered in state_dir()/demo.json (a probe for the same lab, the finished cells of an interrupted
suite), reused by the next run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from lab.local.atomic import write_json
from lab.local.state import state_dir
from lab.model.config import Lab
from lab.model.errors import ActionFailed

T = TypeVar("T")
console = Console(stderr=True)


class Stages:
    """Runs named stages in order and keeps how long each took."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float, str]] = []

    def run(self, name: str, func: Callable[[], T], note: Callable[[T], str] = lambda _: "") -> T:
        console.rule(f"[bold]{name}")
        start = time.monotonic()
        result = func()
        self.times.append((name, time.monotonic() - start, note(result)))
        return result

    def table(self) -> Table:
        table = Table(title="demo: time by stage")
        for column in ("stage", "seconds", "result"):
            table.add_column(column, justify="right" if column == "seconds" else "left")
        for name, seconds, note in self.times:
            table.add_row(name, f"{seconds:.0f}", note)
        table.add_row("total", f"{sum(t for _, t, _ in self.times):.0f}", "")
        return table


def _progress_file() -> Path:
    return state_dir() / "demo.json"


def _remembered() -> dict[str, Any]:
    try:
        return json.loads(_progress_file().read_text())
    except (OSError, ValueError):
        return {}


def _remember(**values: Any) -> None:
    write_json(_progress_file(), {**_remembered(), **values})


def _key(name: str, tag: str) -> str:
    return f"{name}_{tag}" if tag else name


def probe(lab: Lab, conn: Any, experiment: str, *, tag: str = "") -> Path:
    """A probe experiment's JSON (`<run>/probe_*.json`); an earlier demo's is reused for the same lab
    (remembered under `tag` too: one per release in the per-release demo)."""
    from chaos.execute import run_experiment

    key = _key(f"probe_{experiment}", tag)
    known = _remembered().get(key) or {}
    if known.get("lab") == lab.as_dict() and Path(known.get("path", "")).is_file():
        return Path(known["path"])
    run_dir = run_experiment(lab, conn, experiment)
    found = sorted(run_dir.glob("probe_*.json"))
    if not found:
        raise ActionFailed(f"{run_dir}: the {experiment} probe wrote no probe_*.json")
    _remember(**{key: {"path": str(found[0]), "lab": lab.as_dict()}})
    return found[0]


def run_name(path: Path) -> str:
    """A stage result's run directory name (the stage table's result column)."""
    return path.parent.name


def run_suite(lab: Lab, conn: Any, suite: str, *, tag: str = "") -> Path:
    """The suite's matrix.json, keeping the cells an interrupted demo (with the same `tag`) already
    finished."""
    from chaos.matrix import matrix_dir, run_matrix

    key = _key(f"matrix_{suite}", tag)
    out_dir = Path(_remembered().get(key) or matrix_dir(f"{suite}-{tag}" if tag else suite))
    _remember(**{key: str(out_dir)})
    report = run_matrix(lab, conn, suite, out_dir=out_dir)
    _remember(**{key: None})
    return report.parent / "matrix.json"
