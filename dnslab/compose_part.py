"""The compose runtime's cells (issue 16): the labs they run on, the timed deploys, and the compose part
of the standard `make demo`.

The part runs on the demo's own VM after its probes: deploy labs/compose.toml (the systemd stack is torn
down first; timed from `docker-compose up -d` until the VIP answers) and again (0 changed when
idempotent), the `standard-compose` suite (a resolver container crashed 5 times under restart
unless-stopped; when Docker restarted it answers what the policy does) and the `standard-seed` suite on
labs/seed-compose.toml (the seed's client through Docker's embedded DNS). The standard suite that
follows deploys the systemd stack back, and reports/compose.html compares these cells with its
kill-one. The full set, on a fresh VM: `SUITE=compose make demo` (dnslab/compose_demo.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnslab.stages import Stages, run_name, run_suite
from lab.local.atomic import write_json
from lab.model.config import REPO_ROOT, Lab
from lab.model.errors import ActionFailed
from lab.model.parse import load_lab, with_overrides
from reports.compose_page import deploy_figures

COMPOSE_LAB = REPO_ROOT / "labs" / "compose.toml"
SEED_LAB = REPO_ROOT / "labs" / "seed-compose.toml"
# a `make demo` suite that gets a compose part -> (its compose suite, its seed suite)
PARTS = {"standard": ("standard-compose", "standard-seed")}


def compose_labs(lab: Lab) -> tuple[Lab, Lab]:
    """labs/compose.toml and labs/seed-compose.toml on `lab`'s machine (its [vm] and [ssh] tables)."""
    machine = {key: value for key, value in lab.as_dict().items() if key in ("vm", "ssh")}
    compose, seed = (with_overrides(load_lab(path), machine) for path in (COMPOSE_LAB, SEED_LAB))
    return compose, seed


def has_part(lab: Lab, suite: str) -> bool:
    """Whether the demo of `suite` on `lab` runs the compose part: a systemd lab (the reference) on a lab
    VM (qemu or Vagrant: the lab image has Docker; a host of the operator's, the ssh provider, need not)."""
    return suite in PARTS and lab.stack.runtime == "systemd" and lab.vm.provider != "ssh"


def timed_deploy(lab: Lab, conn: Any) -> Any:
    """Deploy `lab`; its Summary. A failed step stops the demo (one line, the step and its error)."""
    from lab.ops.deploy import deploy

    summary = deploy(lab, conn)
    if summary.failed:
        first = (summary.error or "see above").splitlines()[0]
        raise ActionFailed(f"{lab.source}: deploy failed at {summary.failed_step}: {first}")
    return summary


def deploy_twice(stages: Stages, lab: Lab, conn: Any, out: Path, *, fresh_vm: bool) -> Path:
    """Deploy `lab` and deploy it again, each a stage; the deploy figures written to `out`."""
    what = "fresh VM" if fresh_vm else "compose"
    fresh = stages.run(f"deploy ({what})", lambda: timed_deploy(lab, conn),
                       lambda s: f"{s.changed} changed, {s.seconds:.0f} s")
    again = stages.run(f"deploy ({what}) again", lambda: timed_deploy(lab, conn),
                       lambda s: f"{s.changed} changed, {s.seconds:.0f} s")
    write_json(out, deploy_figures(fresh.seconds, fresh.step_seconds, again.seconds, again.changed,
                                   fresh.changed_steps(), fresh_vm=fresh_vm))
    return out


def run_part(lab: Lab, conn: Any, suite: str, stages: Stages, deploy_json: Path) -> dict[str, Path]:
    """The compose part of `suite`'s demo on `lab`'s VM: the deploy figures' file and the matrix.json
    of its compose and seed suites (keys "deploy", "compose", "seed")."""
    compose, seed = compose_labs(lab)
    compose_suite, seed_suite = PARTS[suite]
    found = {"deploy": deploy_twice(stages, compose, conn, deploy_json, fresh_vm=False)}
    found["compose"] = stages.run(f"{compose_suite} suite", lambda: run_suite(compose, conn, compose_suite),
                                  run_name)
    found["seed"] = stages.run(f"{seed_suite} suite", lambda: run_suite(seed, conn, seed_suite), run_name)
    return found
