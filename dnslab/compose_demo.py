"""`fab demo --suite compose` (`SUITE=compose make demo`): the compose runtime's answers (issue 16) on
one fresh VM, then reports/compose.html.

Stages: the image, a fresh VM, deploy labs/compose.toml (timed: the whole deploy, `docker-compose up
-d`, and from it until the VIP answers), deploy it again (0 changed when idempotent), the `compose`
suite on labs/compose.toml, the `seed-compose` suite on labs/seed-compose.toml, the systemd reference
(the `compose-reference` suite, kill-one, on the lab file given: lab.toml; deploy retires the compose
stack), then down, also when a stage fails or is interrupted; then the page. Refused while a lab VM is
up (the first deploy must meet a fresh VM) and with another provider than qemu. The suites' finished
cells are remembered (dnslab/stages.py), so a re-run picks up where an interrupted one stopped.
"""

from __future__ import annotations

from pathlib import Path

from dnslab.compose_part import COMPOSE_LAB, SEED_LAB, compose_labs, deploy_twice
from dnslab.stages import Stages, console, run_name, run_suite
from lab.local.runlock import locked
from lab.local.state import runs_dir
from lab.model.config import Lab
from lab.model.errors import ConfigError
from reports.compose_page import headlines, write_compose

SUITE = "compose"
SEED_SUITE = "seed-compose"
REFERENCE_SUITE = "compose-reference"


def refuse_unless_fresh(lab: Lab) -> None:
    """A one-line error unless the demo can boot a fresh VM (the qemu provider, no lab VM up) and `lab`,
    the reference's, runs on systemd."""
    from chaos.releases import refuse_unless_free

    if lab.stack.runtime != "systemd":
        raise ConfigError(f"{lab.source}: [stack] runtime: the compose demo's reference runs on systemd, "
                          f"not {lab.stack.runtime}; give a systemd lab file (lab.toml)")
    refuse_unless_free(lab, "the compose demo", boots="times a deploy on a fresh VM it boots",
                       fresh="times a deploy on a fresh VM")


def measure(lab: Lab, stages: Stages, files: dict[str, Path]) -> dict[str, Path]:
    """The stages that need the VM (image, up, both deploys, the three suites), the VM brought down
    whatever happens; the deploy figures' file and each suite's matrix.json."""
    from lab.providers import bring_up, lab_image, open_lab, take_down

    compose, seed = compose_labs(lab)
    stages.run("image", lambda: lab_image(compose), lambda a: a.qcow2.name)
    try:
        endpoint = stages.run("up", lambda: bring_up(compose), lambda e: f"{e.host}:{e.port}")
        with open_lab(endpoint) as conn:
            out = {"deploy": deploy_twice(stages, compose, conn, files["deploy"], fresh_vm=True)}
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
