"""Naming a run's directory: reports/runs/<run-id>/ here (docs/run-directory.md) and its twin, the
run's working directory in the guest."""

from __future__ import annotations

import time
from pathlib import Path

from chaos.probes import GUEST_RUNS
from lab.local.state import runs_dir
from lab.model.parse import check_id


def run_id_for(experiment: str, run_id: str | None = None) -> str:
    """`run_id` checked, else `<UTC stamp>-<experiment>`."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return check_id(run_id or f"{stamp}-{experiment}", "run id")


def free_dir(run_id: str) -> Path:
    """runs/<run_id>, or runs/<run_id>-N when that exists (not made yet)."""
    path = runs_dir() / run_id
    n = 1
    while path.exists():
        n += 1
        path = runs_dir() / f"{run_id}-{n}"
    return path


def claim(path: Path) -> Path:
    """Make the run directory `path`; when another run took that name meanwhile (runs/ is shared),
    the next free one. Returns the directory made."""
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            path = free_dir(path.name)


def guest_dir(run_id: str) -> str:
    """The run's working directory in the guest: records, samples, pidfiles."""
    return f"{GUEST_RUNS}/{run_id}"
