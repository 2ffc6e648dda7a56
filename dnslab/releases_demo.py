"""`fab demo --suite releases` (`SUITE=releases make demo`): the demo's job on each guest release in
turn, one VM at a time, then one page side by side.

For each release of RELEASES, in order: the lab file's lab with `[vm] release` set, its image, up,
deploy, both probes, the `releases` suite and that release's answers page
(reports/answers-<release>.html), then down, also when a stage fails or is interrupted. Then
reports/releases.html puts the releases side by side. Refused while a lab VM is up and with another
provider than qemu. Probes and finished cells are remembered per release (dnslab/stages.py), so a
re-run picks up where an interrupted one stopped.
"""

from __future__ import annotations

from pathlib import Path

from dnslab.stages import Stages, console, probe, run_name, run_suite
from lab.local.runlock import locked
from lab.local.state import runs_dir
from lab.model.config import RELEASES, Lab
from lab.model.parse import with_overrides
from reports.answers import headlines
from reports.releases import Release, read_release, write_releases

SUITE = "releases"


def run_release(lab: Lab, stages: Stages, page: Path) -> Release:
    """One release's whole job (image, up, deploy, probes, suite, answers page, down); its data for
    the side-by-side page at `page`. The VM is brought down whatever happens."""
    from lab.ops.deploy import deploy
    from lab.providers import bring_up, lab_image, open_lab, take_down
    from reports.answers import write_answers

    name = lab.vm.release
    stages.run(f"{name}: image", lambda: lab_image(lab), lambda a: a.qcow2.name)
    try:
        endpoint = stages.run(f"{name}: up", lambda: bring_up(lab), lambda e: f"{e.host}:{e.port}")
        with open_lab(endpoint) as conn:
            stages.run(f"{name}: deploy", lambda: deploy(lab, conn), lambda s: f"{s.changed} changed")
            sysctls = stages.run(f"{name}: sysctl probe",
                                 lambda: probe(lab, conn, "sysctl-namespaces", tag=name), run_name)
            costs = stages.run(f"{name}: checks probe", lambda: probe(lab, conn, "check-cost", tag=name),
                               run_name)
            matrix_json = stages.run(f"{name}: experiments", lambda: run_suite(lab, conn, SUITE, tag=name),
                                     run_name)
    finally:
        stages.run(f"{name}: down", lambda: take_down(lab))
    runs = runs_dir()
    answers_page, answers = stages.run(
        f"{name}: answers",
        lambda: write_answers(matrix_json, sysctls, lab, runs, runs.parent / f"answers-{name}.html", costs),
        lambda r: str(r[0]))
    print("\n".join([f"{name}: answers {answers_page}", *(f"  {line}" for line in headlines(answers))]))
    return read_release(name, matrix_json, sysctls, costs, answers_page, page)


@locked("demo")
def run_releases_demo(lab: Lab, *, lab_file: str = "lab.toml") -> Path:
    """Every release's job, one VM at a time, then the side-by-side page; that page's path."""
    from chaos.releases import refuse_unless_free

    refuse_unless_free(lab, "the releases demo")
    stages = Stages()
    console.print(f"dnslab demo: lab {lab_file}, releases {', '.join(RELEASES)} in turn, suite {SUITE}")
    page = runs_dir().parent / "releases.html"
    done = [run_release(with_overrides(lab, {"vm": {"release": name}}), stages, page) for name in RELEASES]
    stages.run("side by side", lambda: write_releases(done, lab, page), str)
    console.print(stages.table())
    print(f"releases: {page}")
    console.print(f"The lab is down: each release's VM was brought down after its suite. Open {page}")
    return page
