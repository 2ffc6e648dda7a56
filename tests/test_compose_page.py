"""The compose runtime's answers page: a difference is named only when the 95 % intervals separate, every
figure shows n and the faults excluded (and why), and a cell that did not run reads "not measured"."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lab.local.state import runs_dir
from reports.cells import Cell
from reports.compose_page import (
    CANNOT_TELL,
    NOT_MEASURED,
    Run,
    answer_lines,
    compose_answers,
    deploy_figures,
    headlines,
    init_answer,
    render_compose,
    sees,
    summary_section,
    write_compose,
)
from reports.detection import action_stats
from reports.stats import NO_DIFFERENCE

SLOW, NEAR = [1700.0, 1060, 1980, 1650, 1800], [1690.0, 1100, 1900, 1600, 1750]
FAST = [300.0, 310, 320, 305, 315]
STALLED = "only 3% of the queries in the second before it were answered: the lab was stalled"


def run(run_id: str, experiment: str, windows: list[float], *, runtime: str = "compose",
        restart: str = "unless-stopped", nameservers: tuple[str, ...] = ("vip",), client: str = "raw",
        excluded: int = 0, lookups_failed: int = 10, lookup_max: float = 50.0,
        exit_events: bool = False, restarted: list[float | None] | None = None) -> Run:
    """A fault run with one fault per window (the last `excluded` of them met a stalled lab) and the
    lab it ran, as meta.json holds it (flattened); `restarted`: each fault's policy restart."""
    faults = [{"action": "kill_resolver", "failover_window_ms": w, "failed": int(w / 10), "detection_ms": w,
               "resolver": "rs2", "lookups_failed": lookups_failed, "lookup_max_ms": lookup_max,
               "excluded_why": STALLED if i >= len(windows) - excluded else None,
               "restarted_ms": (restarted or [None] * len(windows))[i]}
              for i, w in enumerate(windows)]
    summary = {"queries": 3000, "ok": 2900, "dropped": 100, "max_stall_ms": max(windows), "duration_s": 10.0,
               "faults": faults, "fault_stats": action_stats(faults), "answers_by_resolver": {"rs2": 500},
               "lookups_failed": 100, "lookup_max_ms": lookup_max, "returns": [{"first_answer_ms": 12.0}]}
    lab = {"stack.runtime": runtime, "stack.restart": restart, "load.nameservers": list(nameservers),
           "load.client": client, "check.type": "DNS_CHECK", "check.delay_loop": 0.5,
           "check.removal_on_exit": exit_events}
    return Run(Cell(run_id, experiment, {}, {}, summary, f"runs/{run_id}/report.html"), lab)


def compose_suite(kill: list[float], no: list[float] | None = None) -> list[Run]:
    runs = [run("c1", "kill-one", kill), run("c2", "stop-one", FAST), run("c3", "all-down", [4000.0])]
    return runs + ([run("c4", "kill-one", no, restart="no")] if no else [])


def seed_suite(musl_excluded: int = 0) -> list[Run]:
    return [run("s1", "kill-one-of-two", FAST),
            run("s2", "kill-one-of-two", FAST, nameservers=("docker",)),
            run("s3", "kill-one-of-two", FAST, nameservers=("docker",), client="musl",
                excluded=musl_excluded, lookups_failed=0, lookup_max=4000.0)]


SYSTEMD = [run("r1", "kill-one", SLOW, runtime="systemd", restart="no")]
DEPLOY = {"fresh_s": 80.0, "again_s": 6.0, "again_changed": 0, "compose_up_s": 20.0, "ready_s": 3.0,
          "changed_steps": ["compose: project up with the current compose.yaml, every container running"]}


def verdicts(comparisons: list[dict[str, str]]) -> list[str]:
    return [c["verdict"] for c in comparisons]


def test_a_difference_is_named_only_when_the_intervals_separate():
    separate = compose_answers(compose_suite(FAST), [], SYSTEMD, None)["answers"]["keepalived"]
    # compose against systemd: detection, then window (this cell's detection equals its window)
    assert verdicts(separate["comparisons"])[:2] == ["lower with compose, unless-stopped"] * 2
    overlap = compose_answers(compose_suite(NEAR), [], SYSTEMD, None)["answers"]["keepalived"]
    assert verdicts(overlap["comparisons"])[:2] == [NO_DIFFERENCE] * 2
    slower = compose_answers(compose_suite(SLOW, no=FAST), [], [], None)["answers"]["restart"]
    assert verdicts(slower["comparisons"]) == ['lower with compose, restart "no"'] * 3
    assert "the 95 % intervals separate" in slower["comparisons"][0]["text"]


def test_fewer_than_three_kept_faults_cannot_tell_and_the_excluded_are_shown_with_why():
    data = compose_answers([], seed_suite(musl_excluded=3), [], None)
    docker_dns = data["answers"]["docker_dns"]
    musl = docker_dns["rows"][2]
    assert (musl["n"], musl["excluded"], musl["why"]) == (2, 3, [STALLED] * 3)
    assert verdicts(docker_dns["comparisons"])[3:] == [CANNOT_TELL, CANNOT_TELL]  # musl against raw
    assert docker_dns["sees"] == ["failed lookups"] * 2 + [
        "a stall (a lookup over 1000 ms) (only 2 kept faults)"]
    page = render_compose(data)
    assert "the seed, Docker DNS (musl): 3 of 5 faults excluded: " + STALLED in page
    assert re.search(r'data-path="the seed, Docker DNS \(musl\)".*?2 \(3 excluded\)', page, re.S)


def test_missing_cells_read_not_measured_rather_than_failing():
    data = compose_answers(compose_suite(FAST), [], [], None)
    answers = data["answers"]
    assert answers["init"] is None
    assert answers["keepalived"]["missing"] == ["systemd", 'compose, restart "no"']
    assert verdicts(answers["restart"]["comparisons"]) == [NOT_MEASURED] * 3
    assert answers["restart"]["comparisons"][0]["text"] == (
        "failover window: not measured (only compose, unless-stopped ran)")
    assert answers["docker_dns"]["sees"] == [NOT_MEASURED] * 3
    page = render_compose(data)
    assert 'Not measured: systemd; compose, restart &#34;no&#34;' in page
    assert 'data-answer="init">Not measured' in page
    empty = compose_answers([], [], [], None)
    assert empty["answers"]["keepalived"]["works"] is None and empty["cells"] == []
    assert "No fault cell completed." in render_compose(empty)
    assert headlines(empty)[0].startswith("keepalived in compose: not measured")


def test_every_compose_cell_is_listed_with_its_link_and_only_the_picked_reference():
    reference = [*SYSTEMD, run("r2", "kill-one", FAST, runtime="systemd", restart="no")]
    reference[1] = Run(Cell("r2", "kill-one", {"load.client": "glibc"}, {"load": {"client": "glibc"}},
                            reference[1].cell.summary, "runs/r2/report.html"), reference[1].lab)
    data = compose_answers(compose_suite(FAST, no=SLOW), seed_suite(), reference, DEPLOY)
    assert [(c["suite"], c["run_id"]) for c in data["cells"]] == [
        ("compose", "c1"), ("compose", "c2"), ("compose", "c3"), ("compose", "c4"),
        ("seed-compose", "s1"), ("seed-compose", "s2"), ("seed-compose", "s3"), ("systemd reference", "r1")]
    page = render_compose(data)
    assert 'href="runs/c2/report.html"' in page and "docker pause of one resolver (the hang)" in page
    assert data["answers"]["keepalived"]["works"] is True
    # the seed ran at its own rate: its failed queries are not weighed against the recommended settings'
    presets = [c["text"].split(":")[0] for c in data["answers"]["presets"]["comparisons"]]
    assert presets == ["detection", "failover window", "failover window", "failed queries per fault",
                       "detection"]


def test_removal_on_exit_is_its_own_row_and_not_taken_for_the_plain_crash():
    """The cell with removal on exit answers its question against the plain unless-stopped crash; it is
    never picked as that crash's row, whichever comes first."""
    runs = [run("e1", "kill-one", FAST, exit_events=True), *compose_suite(SLOW)]
    data = compose_answers(runs, [], [], None)["answers"]
    assert data["keepalived"]["rows"][1]["run_id"] == "c1"
    assert [r["run_id"] for r in data["exit"]["rows"]] == ["c1", "e1"]
    assert verdicts(data["exit"]["comparisons"]) == ["lower with compose, removal on exit"] * 3
    assert compose_answers(compose_suite(SLOW), [], [], None)["answers"]["exit"]["missing"] == [
        "compose, removal on exit"]


def test_a_cell_that_failed_before_its_run_directory_is_skipped(tmp_path):
    """A matrix entry without a run directory (the cell failed before its run began) is not a run."""
    from reports.compose_page import read_runs

    matrix = tmp_path / "matrix.json"
    matrix.write_text(json.dumps({"cells": [{"experiment": "all-down-repeat", "status": "failed",
                                             "error": "the run fell 254 s behind its plan"}]}))
    assert read_runs(matrix, tmp_path / "c.html") == []


def test_the_lab_as_run_decides_which_cell_answers_what():
    """A seed cell that asked Docker's DNS (meta.json) is not taken for the VIP-direct one."""
    docker_only = [run("s2", "kill-one-of-two", FAST, nameservers=("docker",))]
    rows = compose_answers([], docker_only, [], None)["answers"]["docker_dns"]["rows"]
    assert rows[0] is None and rows[1]["run_id"] == "s2"
    assert "Docker DNS 127.0.0.11, raw" in rows[1]["label"]


def test_sees_tells_failures_from_a_stall_and_an_all_excluded_cell():
    rows = compose_answers([], seed_suite(), [], None)["answers"]["docker_dns"]["rows"]
    assert sees(rows[0]) == "failed lookups"
    assert sees(rows[2]) == "a stall (a lookup over 1000 ms)"
    all_out = compose_answers([], [run("s1", "kill-one-of-two", FAST, excluded=5)], [], None)
    assert sees(all_out["answers"]["docker_dns"]["rows"][0]) == f"{CANNOT_TELL}: all 5 faults excluded"


def test_deploy_figures_time_compose_up_and_the_steps_until_the_vip_answers():
    steps = {"docker: daemon running": 5.0,
             "compose: project up with the current compose.yaml, every container running": 21.0,
             "keepalived: container runs the current keepalived.conf": 1.0, "netns: rs1 named": 0.5,
             "ready: IPVS lists every real server (and, after a change, every resolver answers)": 2.5}
    figures = deploy_figures(90.0, steps, 7.0, 0, ["docker: daemon running"])
    assert (figures["compose_up_s"], figures["ready_s"]) == (21.0, 4.0)
    answer = init_answer(figures)
    assert answer and answer["to_vip_s"] == 25.0 and answer["idempotent"]
    assert not (init_answer({**figures, "again_changed": 2}) or {})["idempotent"]
    assert deploy_figures(90.0, {"ready: x": 1.0}, 7.0, 0, [])["compose_up_s"] is None
    page = render_compose(compose_answers([], [], [], figures))
    assert "took 21.0 s and the VIP answered 4.0 s after it (25.0 s in all)" in page


def test_write_compose_reads_the_real_seed_compose_matrix(tmp_path):
    """From the seed-compose suite's measured runs (and the compose suite's, when there), if present."""
    def complete(path: Path) -> bool:
        cells = json.loads(path.read_text()).get("cells") or []
        return bool(cells) and all(c.get("status") == "completed" for c in cells)

    matrices = sorted((runs_dir().parent / "matrix").glob("*-seed-compose/matrix.json"))
    found = [p for p in matrices if complete(p)]
    if not found:
        pytest.skip("no complete seed-compose matrix under reports/matrix (DNSLAB_RUNS: one with it)")
    composed = sorted((runs_dir().parent / "matrix").glob("*-compose/matrix.json"))
    composed = [p for p in composed if "seed-compose" not in p.parent.name]
    page, data = write_compose(composed[-1] if composed else None, found[-1], None, None, tmp_path / "c.html")
    rows = data["answers"]["docker_dns"]["rows"]
    assert all(rows) and all(r["n"] + r["excluded"] == 5 for r in rows)
    if composed:  # every completed cell of the compose suite is listed
        cells = json.loads(composed[-1].read_text())["cells"]
        assert [c["run_id"] for c in data["cells"] if c["suite"] == "compose"] == [
            Path(c["run_dir"]).name for c in cells if c["status"] == "completed"]
    text = page.read_text()
    for row in rows:
        assert f"{row['n']} ({row['excluded']} excluded)" in text and len(row["why"]) == row["excluded"]
        assert all(why in text for why in row["why"])


def test_without_the_seeds_vip_cell_another_seed_cell_is_compared_on_detection_alone():
    """make demo's seed cell asks through Docker's DNS: its window depends on that client path, Keepalived's
    removal does not."""
    musl = [r for r in seed_suite() if r.value("load.client") == "musl"]
    data = compose_answers(compose_suite(SLOW), musl, SYSTEMD, None)
    presets = data["answers"]["presets"]
    assert [r["name"] for r in presets["rows"]] == ["the seed, Docker DNS (musl)", "compose, unless-stopped",
                                                    "systemd"]
    texts = [c["text"] for c in presets["comparisons"]]
    assert texts[0].startswith("detection: ") and "with the seed, Docker DNS (musl)" in texts[0]
    assert [t.split(":")[0] for t in texts[1:]] == ["failover window", "failed queries per fault",
                                                    "detection"]
    assert verdicts(presets["comparisons"])[0] == "lower with the seed, Docker DNS (musl)"


def test_the_answers_pages_section_gives_each_question_its_lines_and_links_the_page():
    data = compose_answers(compose_suite(FAST, no=SLOW), seed_suite(), SYSTEMD,
                           init_answer({**DEPLOY, "fresh_vm": False}))
    section = summary_section(data, "compose.html")
    assert section.title == "The compose runtime (the seed's own stack)"
    for key in data["questions"]:
        assert f'data-question="{key}"' in section.html
    assert ("init container: docker-compose up 20.0 s, VIP answering 3.0 s later; redeploy 0 changed"
            in section.html)
    assert "restart policy: failover window: " in section.html and "presets: detection: " in section.html
    assert '<a href="compose.html">compose.html</a>' in section.html
    assert "python -m lab render --lab labs/compose-exit.toml --out DIR" in section.html
    page = render_compose(data)
    assert ("On the demo&#39;s VM, its systemd stack torn down by this deploy, "
            "<code>docker-compose up -d</code>") in page
    assert "On a fresh VM" in render_compose(compose_answers([], [], [], init_answer(DEPLOY)))


@pytest.mark.parametrize(("restarted", "spread", "after", "line"), [
    ([3000.0, 3100, 2900, 3050, 2950], "3000 [2900–3100] ms, n=5", 5,
     "so the policy did not shorten the burp"),
    ([3000.0, 3100, 1000, 3050, 1200], "3000 [1000–3100] ms, n=5", 3,
     "so it shortened the burp in 2 of 5"),
])
def test_without_a_restart_no_cell_the_policy_is_read_from_when_docker_restarted_the_container(
        restarted, spread, after, line):
    """A restart after the window closed cannot have changed the burp: Keepalived's removal ended it."""
    unless = run("c1", "kill-one", SLOW, restarted=restarted)
    data = compose_answers([unless], [], SYSTEMD, None)
    restart = data["answers"]["restart"]
    assert (restart["policy"]["after"], restart["policy"]["n"]) == (after, 5)
    assert restart["policy"]["restarted"] == spread
    (text,) = answer_lines(data)["restart"]  # the "no" comparison reads not measured: left out
    assert text.startswith(f"restart policy: Docker started the crashed container again {spread} after")
    assert text.endswith(line)
    page = render_compose(data)
    assert f"had closed by then in <b>{after} of 5</b> kept faults" in page


def test_no_policy_restart_leaves_the_measured_comparison_alone():
    data = compose_answers(compose_suite(SLOW, no=FAST), [], [], None)
    assert data["answers"]["restart"]["policy"] is None
    (text,) = answer_lines(data)["restart"]
    assert text.startswith("restart policy: failover window: ") and "lower with compose, restart" in text


def test_a_comparison_with_a_side_not_measured_is_left_off_the_page():
    data = compose_answers(compose_suite(SLOW), [], SYSTEMD, None)
    assert verdicts(data["answers"]["restart"]["comparisons"]) == [NOT_MEASURED] * 3
    page = render_compose(data)
    assert 'data-verdict="not measured"' not in page and 'data-verdict="no measurable difference"' in page
    (text,) = answer_lines(data)["exit"]
    assert text == "removal on exit: not measured here (`SUITE=compose make demo` measures it)"
