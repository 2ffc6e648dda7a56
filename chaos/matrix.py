"""A suite of experiments over a grid of settings (chaos/suites.yaml), then the comparison.

`cells` is pure: a suite becomes the list of (experiment, lab overrides) cells. `run_matrix` checks
every cell against the lab before the first one runs, runs them one by one (a failed cell is
recorded and the next one runs; Ctrl-C stops after rolling back the current one), puts lab.toml's
settings back, and runs `python -m reports compare` over the cells. A cell that would run the same
experiment on the same lab as an earlier cell (e.g. `inhibit_on_failure = false` when that is
lab.toml's own value) reuses the earlier cell's run instead of measuring it again.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.experiment import EXPERIMENTS_DIR, prepare
from chaos.yaml_doc import read_yaml
from lab.local.atomic import write_json
from lab.local.state import runs_dir
from lab.model.config import Lab
from lab.model.errors import ActionFailed, ExperimentError, LabError
from lab.model.parse import merge

SUITES = EXPERIMENTS_DIR.parent / "suites.yaml"


@dataclass(frozen=True)
class SuiteCell:
    """One run of a matrix: an experiment and the lab overrides of this grid point."""

    experiment: str
    overrides: dict[str, Any]
    varied: dict[str, Any]
    where: str = ""  # the suite file, line and run it comes from, for error messages

    @property
    def label(self) -> str:
        parts = [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.varied.items()]
        return self.experiment + (f" [{', '.join(parts)}]" if parts else "")

    @property
    def slug(self) -> str:
        parts = [f"{k.rsplit('.', 1)[-1]}-{v}" for k, v in self.varied.items()]
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join([self.experiment, *parts])).lower()


def setting(path: str, value: Any) -> dict[str, Any]:
    """`sysctl.net.ipv4.vs.x`, 1 -> {"sysctl": {"net.ipv4.vs.x": 1}} (the table is before the first dot)."""
    table, _, key = path.partition(".")
    if not key:
        raise ValueError(f"grid key {path!r} must be TABLE.KEY, e.g. check.delay_loop")
    return {table: {key: value}}


def cells(suite: Mapping[str, Any]) -> list[SuiteCell]:
    """Every cell of a suite, in order: experiments x the product of the grid values."""
    out = []
    wheres = suite.get("where") or [""] * len(suite["runs"])
    for run, where in zip(suite["runs"], wheres, strict=True):
        grid: Mapping[str, list[Any]] = run.get("grid") or {}
        keys = list(grid)
        for experiment in run["experiments"]:
            for values in itertools.product(*(grid[k] for k in keys)):
                overrides = dict(run.get("overrides") or {})
                for key, value in zip(keys, values, strict=True):
                    overrides = merge(overrides, setting(key, value))
                out.append(SuiteCell(experiment, overrides, dict(zip(keys, values, strict=True)), where))
    return out


def load_suite(name: str, path: Path = SUITES) -> dict[str, Any]:
    """The suite called `name`, shape-checked, or a one-line LabError naming the file and line."""
    data, lines = read_yaml(path)
    if not isinstance(data, dict) or name not in data:
        known = ", ".join(data) if isinstance(data, dict) else "none"
        raise ExperimentError(f"{path}: no suite named {name!r}; known: {known}")
    suite = data[name]
    where = f"{path}:{lines.get((name,), '?')}: {name}"
    if not isinstance(suite, dict) or not isinstance(suite.get("runs"), list) or not suite["runs"]:
        raise ExperimentError(f"{where}: needs `runs:`, a list of {{experiments: [...], grid: {{...}}}}")
    wheres = []
    for i, run in enumerate(suite["runs"]):
        at = f"{path}:{lines.get((name, 'runs', i), '?')}: {name}.runs[{i}]"
        wheres.append(at)
        exps = run.get("experiments") if isinstance(run, dict) else None
        if not exps or not isinstance(exps, list):
            raise ExperimentError(f"{at}: needs `experiments:`, a non-empty list of experiment names")
        unknown = set(run) - {"experiments", "grid", "overrides"}
        if unknown:
            raise ExperimentError(f"{at}: unknown key {sorted(unknown)[0]!r}; "
                                  "known: experiments, grid, overrides")
        grid = run.get("grid") or {}
        if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
            raise ExperimentError(f"{at}.grid: must map TABLE.KEY to a non-empty list of values")
        for key in grid:
            if "." not in str(key):
                raise ExperimentError(f"{at}.grid: key {key!r} must be TABLE.KEY, e.g. check.delay_loop")
    return {**suite, "where": wheres}


def check_cells(lab: Lab, suite_cells: list[SuiteCell]) -> None:
    """Validate every cell (experiment file and overrides) before anything runs."""
    for cell in suite_cells:
        try:
            prepare(cell.experiment, lab, cell.overrides)
        except LabError as err:
            # a bad value of the cell's own overrides: name the suite's line, not the lab file
            message, lab_prefix = str(err), f"{lab.source}: "
            if cell.where and message.startswith(lab_prefix):
                message = f"{cell.where}: {message[len(lab_prefix):]}"
            raise ExperimentError(f"matrix cell {cell.label}: {message}") from None


def repeats(lab: Lab, suite_cells: list[SuiteCell]) -> dict[int, int]:
    """Cell index -> index of the earlier cell that runs the same experiment on the same lab."""
    first: dict[str, int] = {}
    out = {}
    for i, cell in enumerate(suite_cells):
        _, runs_on = prepare(cell.experiment, lab, cell.overrides)
        key = json.dumps([cell.experiment, runs_on.as_dict()], sort_keys=True, default=str)
        if key in first:
            out[i] = first[key]
        else:
            first[key] = i
    return out


def finished_cells(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Completed cells of an earlier (interrupted) run of the matrix in `out_dir`, by cell slug."""
    try:
        data = json.loads((out_dir / "matrix.json").read_text())
    except (OSError, ValueError):
        return {}
    return {c["slug"]: c for c in data.get("cells") or []
            if c.get("status") == "completed" and c.get("slug") and Path(c.get("run_dir", "")).is_dir()}


def matrix_dir(suite: str) -> Path:
    """A new directory for one run of a suite: reports/matrix/<UTC stamp>-<suite>/."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return runs_dir().parent / "matrix" / f"{stamp}-{suite}"


def run_matrix(lab: Lab, conn: Any, suite: str, *, out_dir: Path | None = None) -> Path:
    """Run every cell of the suite, then the comparison report; the report's path.

    Given the `out_dir` of an interrupted run of the same suite, its completed cells are kept and
    only the others run."""
    from lab.local.runlock import lab_lock

    with lab_lock(f"matrix {suite}"):
        return _run_matrix(lab, conn, suite, out_dir)


def _run_matrix(lab: Lab, conn: Any, suite: str, out_dir: Path | None) -> Path:
    from chaos.execute import run_experiment
    from chaos.runner import console
    from lab.ops.deploy import deploy

    todo = cells(load_suite(suite))
    check_cells(lab, todo)
    out_dir = out_dir or matrix_dir(suite)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = out_dir.name.split("-", 1)[0]
    kept = finished_cells(out_dir)
    same = repeats(lab, todo)
    done: list[dict[str, Any]] = []
    interrupted = False
    try:
        for i, cell in enumerate(todo, 1):
            if i - 1 in same:
                earlier = done[same[i - 1]]
                console.print(f"cell {i}/{len(todo)}: {cell.label}: same run as cell {same[i - 1] + 1}")
                done.append({"experiment": cell.experiment, "settings": cell.varied,
                             "overrides": cell.overrides, "slug": cell.slug, "same_as": earlier["slug"],
                             **{k: earlier[k] for k in ("run_dir", "status", "error") if k in earlier}})
                continue
            if cell.slug in kept:
                console.print(f"cell {i}/{len(todo)}: {cell.label}: kept from the interrupted run")
                done.append(kept[cell.slug])
                continue
            console.rule(f"cell {i}/{len(todo)}: {cell.label}")
            entry: dict[str, Any] = {"experiment": cell.experiment, "settings": cell.varied,
                                     "overrides": cell.overrides, "slug": cell.slug}
            try:
                run_dir = run_experiment(lab, conn, cell.experiment, cell=cell.overrides,
                                         run_id=f"{stamp}-{suite}-{i:02d}-{cell.slug}"[:120])
                entry.update(run_dir=str(run_dir), status="completed")
            except LabError as err:
                entry.update(status="failed", error=str(err))
                console.print(f"[red]cell failed: {err}[/]")
            done.append(entry)
            write_json(out_dir / "matrix.json", {"suite": suite, "cells": done})
    except KeyboardInterrupt:
        interrupted = True
    finally:
        console.print("putting lab.toml's settings back")
        deploy(lab, conn, console=console, verbose=False)
    runs = list(dict.fromkeys(c["run_dir"] for c in done
                              if c.get("run_dir") and (Path(c["run_dir"]) / "queries.csv").is_file()))
    write_json(out_dir / "matrix.json", {"suite": suite, "cells": done})
    if interrupted:
        raise KeyboardInterrupt
    if not runs:
        raise ActionFailed(f"no cell of suite {suite!r} completed; see {out_dir / 'matrix.json'}")
    return compare(runs, out_dir)


def completed_runs(out_dir: Path) -> list[str]:
    """The run directories of a matrix's cells that recorded queries, in cell order, each once."""
    try:
        done = json.loads((out_dir / "matrix.json").read_text()).get("cells") or []
    except (OSError, ValueError):
        return []
    return list(dict.fromkeys(c["run_dir"] for c in done
                              if c.get("run_dir") and (Path(c["run_dir"]) / "queries.csv").is_file()))


def compare(runs: list[str], out_dir: Path) -> Path:
    """`python -m reports compare` over the runs into out_dir/comparison.html; its path."""
    report = out_dir / "comparison.html"
    res = subprocess.run([sys.executable, "-m", "reports", "compare", *runs, "--out", str(report)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise ActionFailed(f"comparison report failed: {' '.join(res.stderr.split())[-300:]}; "
                           f"runs: {out_dir}")
    return report
