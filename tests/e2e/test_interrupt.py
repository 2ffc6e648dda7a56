"""End to end: `fab chaos` interrupted during its fault, on the real VM. SIGTERM: the runner rolls back
by itself. SIGKILL: the fault stays until `fab recover` finishes the run. Either way nothing is left
afterwards (bench.interrupt.leftovers: health checks, guest processes, the run marker), and the
run directory is readable by `python -m reports`.

Shares the session VM (tests/e2e/conftest.py); leaves the stack deployed with the lab's settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.interrupt import interrupt_once, leftovers
from lab.ops.deploy import deploy

pytestmark = pytest.mark.e2e


def fault_in(runs: Path) -> bool:
    """A run directory's events.jsonl holds a fault."""
    return any('"kind": "fault"' in p.read_text(errors="replace") for p in runs.glob("*/events.jsonl"))


@pytest.fixture
def clean_lab(lab_vm, conn):
    lab, _ = lab_vm
    summary = deploy(lab, conn, verbose=False)
    assert not summary.failed, summary.error
    assert leftovers(conn, lab) == []
    return lab


@pytest.mark.parametrize(("kind", "experiment"), [("SIGTERM", "stop-one"), ("SIGKILL", "netem-one")])
def test_an_interrupted_run_leaves_no_fault(kind, experiment, clean_lab, conn, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    out = interrupt_once(1, kind, experiment, 0.0, conn=conn, lab=clean_lab, lab_file=None, runs=runs,
                         log_file=tmp_path / "fab.log", recover_by_next_run=False, wait_for=fault_in)
    log = (tmp_path / "fab.log").read_text()
    assert out.phase == "1 fault(s) in", log
    if kind == "SIGTERM":
        assert out.exit == 143 and out.recovery == "runner", log
        assert "interrupted by SIGTERM: rolled back, data kept in" in log
    else:
        assert out.exit == -9 and out.recovery == "fab recover", log
        assert any("netem" in item for item in out.left_before), out.left_before
        assert any("guest process left" in item for item in out.left_before), out.left_before
        assert "recovered " in log and "(status interrupted)" in log
    assert out.left == [], log
    ((name, status),) = out.dirs.items()
    assert status == "readable", log
    meta = json.loads((runs / name / "meta.json").read_text())
    assert meta["status"] == "interrupted" and meta["healthy_after"] is True
