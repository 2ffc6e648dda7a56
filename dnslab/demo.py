"""`fab demo` / `make demo`: image, VM, deploy, probes, the compose part, the experiment suite, the
answers pages — timed by stage.

Re-runnable: the image is cached, a running lab is reused, deploy is idempotent, the probes (sysctl
namespaces, health-check cost; reused for the same lab) and the suites' finished cells are kept in
state_dir()/demo.json and reused by the next run (dnslab/stages.py). The standard suite on a systemd lab
gets the compose part first (dnslab/compose_part.py): its cells answer the compose runtime's questions on
reports/compose.html, summed up on the answers page.
"""

from __future__ import annotations

import json
from pathlib import Path

from dnslab.compose_part import has_part, run_part
from dnslab.stages import Stages, console, probe, run_name, run_suite
from lab.local.runlock import locked
from lab.local.state import runs_dir
from lab.model.config import Lab


@locked("demo")
def run_demo(lab: Lab, *, suite: str = "standard", lab_file: str = "lab.toml") -> Path:
    """The whole job; returns the answers page's path."""
    from lab.ops.deploy import deploy
    from lab.providers import ensure_up, lab_image, open_lab
    from reports.answers import headlines, write_answers
    from reports.compose_page import headlines as compose_headlines
    from reports.compose_page import summary_section, write_compose

    stages = Stages()
    part = has_part(lab, suite)
    console.print(f"dnslab demo: lab {lab_file}, provider {lab.vm.provider}, suite {suite}"
                  + (", with its compose part" if part else ""))
    if lab.vm.provider != "ssh":
        stages.run("image", lambda: lab_image(lab), lambda a: a.qcow2.name)
    endpoint = stages.run("up", lambda: ensure_up(lab), lambda e: f"{e.host}:{e.port}")
    conn = open_lab(endpoint)
    stages.run("deploy", lambda: deploy(lab, conn), lambda s: f"{s.changed} changed")
    sysctls = stages.run("sysctl probe", lambda: probe(lab, conn, "sysctl-namespaces"), run_name)
    costs = stages.run("checks probe", lambda: probe(lab, conn, "check-cost"), run_name)
    runs = runs_dir()
    reports = runs.parent
    found = run_part(lab, conn, suite, stages, reports / "compose-deploy.json") if part else {}
    matrix_json = stages.run("experiments", lambda: run_suite(lab, conn, suite), run_name)
    extra, lines = [], []
    if found:
        compose_page, data = stages.run(
            "compose answers", lambda: write_compose(found["compose"], found["seed"], matrix_json,
                                                     found["deploy"], reports / "compose.html"),
            lambda r: str(r[0]))
        extra, lines = [summary_section(data, compose_page.name)], compose_headlines(data)
    index = reports / "index.html"
    page, answers = stages.run(
        "answers", lambda: write_answers(matrix_json, sysctls, lab, runs, index, costs, extra),
        lambda r: str(r[0]))
    console.print(stages.table())
    cells = json.loads(matrix_json.read_text()).get("cells") or []
    done = sum(c.get("status") == "completed" for c in cells)
    print("\n".join([f"answers: {page}", f"cells: {done} of {len(cells)} completed", *headlines(answers),
                     *(f"compose: {line}" for line in lines)]))
    console.print(f"The lab is still up: `fab status`, `fab chaos`, `fab down` when done. Open {page}")
    return page
