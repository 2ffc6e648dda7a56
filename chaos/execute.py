"""Run an experiment, or load alone, on the lab: the entry points of `fab chaos`, `fab load`, the
matrix and the demo. Each run first finishes a run that died before it (chaos.recover), then runs
(chaos.runner)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chaos.experiment import Experiment, Timing, prepare
from chaos.recover import before_run
from chaos.runner import Run, settings_of
from lab.model.config import Lab
from lab.model.parse import flatten, with_overrides


def run_experiment(lab: Lab, conn: Any, name: str, *, cell: Mapping[str, Any] | None = None,
                   run_id: str | None = None) -> Path:
    """Run experiment `name` (chaos/experiments/NAME.yaml or a path) on the lab; the run directory.

    `cell` holds extra lab overrides (a matrix cell); they are deployed on top of the experiment's.
    """
    exp, run_lab = prepare(name, lab, cell)
    return Run(run_lab, conn, exp, settings=settings_of(exp, cell), run_id=run_id,
               before=before_run).execute()


def run_load_only(lab: Lab, conn: Any, seconds: float, rate: float | None = None) -> Path:
    """Load the lab for `seconds` without faults; the run directory (queries.csv, ipvs.csv, ...)."""
    load = {"rate": rate} if rate is not None else {}
    exp = Experiment(name="load", path=Path("<load>"), title=f"Load only, {seconds:g} s", description="",
                     overrides={}, load=load, timing=Timing(warmup_s=0.0, steady_s=seconds, recover_s=0.0),
                     window_s=seconds, hypothesis=(), method=(), rollbacks=())
    return Run(with_overrides(lab, {"load": load}), conn, exp, settings=flatten({"load": load}),
               before=before_run).execute()
