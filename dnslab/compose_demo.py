"""`fab demo --suite compose` (`SUITE=compose make demo`): the compose runtime's answers (issue 16) on
one fresh VM, then reports/compose.html.

Stages: the image, a fresh VM, deploy labs/compose.toml (timed: the whole deploy, `docker-compose up
-d`, and from it until the VIP answers), deploy it again (0 changed when idempotent), the `compose`
suite on labs/compose.toml, the `seed-compose` suite on labs/seed-compose.toml, the systemd reference
(the `compose-reference` suite, kill-one, on the lab file given: lab.toml; deploy retires the compose
stack), then down, also when a stage fails or is interrupted; then the page. Refused while a lab VM is
up (the first deploy must meet a fresh VM) and with another provider than qemu. The suites' finished
cells are remembered (dnslab/demo.py), so a re-run picks up where an interrupted one stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnslab.demo import Stages, console, run_name, run_suite
from lab.local.atomic import write_json
from lab.local.runlock import locked
from lab.local.state import runs_dir
from lab.model.config import REPO_ROOT, Lab
from lab.model.errors import ActionFailed, ConfigError
from lab.model.parse import load_lab, with_overrides
from reports.compose_page import deploy_figures, headlines, write_compose

SUITE = "compose"
SEED_SUITE = "seed-compose"
REFERENCE_SUITE = "compose-reference"
COMPOSE_LAB = REPO_ROOT / "labs" / "compose.toml"
SEED_LAB = REPO_ROOT / "labs" / "seed-compose.toml"


def refuse_unless_fresh(lab: Lab) -> None:
    """A one-line error unless the demo can boot a fresh VM (the qemu provider, no lab VM up) and `lab`,
    the reference's, runs on systemd."""
    from chaos.releases import refuse_unless_free

    if lab.stack.runtime != "systemd":
        raise ConfigError(f"{lab.source}: [stack] runtime: the compose demo's reference runs on systemd, "
                          f"not {lab.stack.runtime}; give a systemd lab file (lab.toml)")
    refuse_unless_free(lab, "the compose demo", boots="times a deploy on a fresh VM it boots",
                       fresh="times a deploy on a fresh VM")


def timed_deploy(lab: Lab, conn: Any) -> Any:
    """Deploy `lab`; its Summary. A failed step stops the demo (one line, the step and its error)."""
    from lab.ops.deploy import deploy

    summary = deploy(lab, conn)
    if summary.failed:
        first = (summary.error or "see above").splitlines()[0]
        raise ActionFailed(f"{lab.source}: deploy failed at {summary.failed_step}: {first}")
    return summary


def measure(lab: Lab, stages: Stages, files: dict[str, Path]) -> dict[str, Path]:
    """The stages that need the VM (image, up, both deploys, the three suites), the VM brought down
    whatever happens; the deploy figures' file and each suite's matrix.json."""
    from lab.providers import bring_up, lab_image, open_lab, take_down

    compose, seed = (with_overrides(load_lab(p), {"vm": {"provider": lab.vm.provider}})
                     for p in (COMPOSE_LAB, SEED_LAB))
    stages.run("image", lambda: lab_image(compose), lambda a: a.qcow2.name)
    try:
        endpoint = stages.run("up", lambda: bring_up(compose), lambda e: f"{e.host}:{e.port}")
        with open_lab(endpoint) as conn:
            fresh = stages.run("deploy (fresh VM)", lambda: timed_deploy(compose, conn),
                               lambda s: f"{s.changed} changed, {s.seconds:.0f} s")
            again = stages.run("deploy again", lambda: timed_deploy(compose, conn),
                               lambda s: f"{s.changed} changed, {s.seconds:.0f} s")
            figures = deploy_figures(fresh.seconds, fresh.step_seconds, again.seconds, again.changed,
                                     fresh.changed_steps())
            write_json(files["deploy"], figures)
            out = {"deploy": files["deploy"]}
            out[SUITE] = stages.run(f"{SUITE} suite", lambda: run_suite(compose, conn, SUITE), run_name)
            out[SEED_SUITE] = stages.run(f"{SEED_SUITE} suite", lambda: run_suite(seed, conn, SEED_SUITE),
                                         run_name)
            out[REFERENCE_SUITE] = stages.run("systemd reference",
                                              lambda: run_suite(lab, conn, REFERENCE_SUITE), run_name)
    finally:
        stages.run("down", lambda: take_down(compose))
    return out


@locked("demo")
def run_compose_demo(lab: Lab, *, lab_file: str = "lab.toml") -> Path:
    """The whole job on one fresh VM, then reports/compose.html; its path. `lab`: the systemd reference's."""
    refuse_unless_fresh(lab)
    stages = Stages()
    console.print(f"dnslab demo: {COMPOSE_LAB.name}, {SEED_LAB.name} and {lab_file} (systemd) on one "
                  f"fresh VM, suites {SUITE}, {SEED_SUITE}, {REFERENCE_SUITE}")
    reports = runs_dir().parent
    found = measure(lab, stages, {"deploy": reports / "compose-deploy.json"})
    page, data = stages.run(
        "answers", lambda: write_compose(found[SUITE], found[SEED_SUITE], found[REFERENCE_SUITE],
                                         found["deploy"], reports / "compose.html"), lambda r: str(r[0]))
    console.print(stages.table())
    print("\n".join([f"compose answers: {page}", *headlines(data)]))
    console.print(f"The lab is down. Open {page}")
    return page
