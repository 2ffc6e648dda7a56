"""The per-release side-by-side page: differences are named only when the releases' intervals
separate (or a sysctl behaves otherwise), each with the releases its recommendation holds for."""

from __future__ import annotations

import re

import pytest

from lab.model.parse import parse_lab
from reports.answers import Cell
from reports.detection import action_stats
from reports.releases import Release, compare_releases, render_releases

NODEST = "sysctl.net.ipv4.vs.expire_nodest_conn"


def cell(run_id: str, experiment: str, settings: dict, windows: list[float], failed: list[int]) -> Cell:
    """A fault cell with one fault per window (n = len(windows))."""
    faults = [{"action": "kill_resolver", "failover_window_ms": w, "failed": f, "detection_ms": 900.0,
               "resolver": "rs2"} for w, f in zip(windows, failed, strict=True)]
    summary = {"queries": 3000, "dropped": sum(failed), "max_stall_ms": max(windows), "duration_s": 10.0,
               "latency_ms": {"p50": 1.0, "p99": 4.0}, "faults": faults, "fault_stats": action_stats(faults),
               "answers_by_resolver": {"rs1": 1000, "rs2": 500}}
    overrides: dict = {}
    for key, value in settings.items():
        table, _, rest = key.partition(".")
        overrides.setdefault(table, {})[rest] = value
    return Cell(run_id, experiment, settings, overrides, summary, f"runs/{run_id}/report.html")


SLOW, NEAR = [9000.0, 9100, 9200, 9050, 9150], [9020.0, 9120, 9180, 9060, 9140]
FAST = [300.0, 310, 320, 305, 315]


def grid(release: str, reuse_nodest0: list[float]) -> list[Cell]:
    """The releases suite's cells: only kill-one with reused ports and expire_nodest_conn 0 varies."""
    out = []
    for experiment in ("kill-one", "stop-one"):
        for nodest in (0, 1):
            for mode in ("fresh", "reuse"):
                windows = reuse_nodest0 if (experiment, nodest, mode) == ("kill-one", 0, "reuse") else FAST
                out.append(cell(f"{release}-{experiment}-{nodest}-{mode}", experiment,
                                {NODEST: nodest, "load.socket_mode": mode}, windows,
                                [int(w / 10) for w in windows]))
    out.append(cell(f"{release}-exit", "kill-one", {"check.removal_on_exit": True}, FAST, [30] * 5))
    return out


def probe(unpriv_writable: bool, *, extra: str | None = None) -> dict:
    names = ["expire_nodest_conn", "conn_reuse_mode", *([extra] if extra else [])]
    sysctls = {name: {"init": {"exists": True, "value": "1", "writable": True, "leaks_to": []},
                      "child_init_userns": {"exists": True, "value": "1", "writable": True, "leaks_to": []},
                      "child_unpriv_userns": {"exists": True, "value": "1",
                                              "writable": unpriv_writable and name == "conn_reuse_mode",
                                              "leaks_to": []}} for name in names}
    summary = {"total_in_init": len(names), "not_changed": [],
               **{case: {"exist": len(names), "writable": len(names), "leaking": []}
                  for case in ("init", "child_init_userns", "child_unpriv_userns")}}
    return {"kernel": "6.x", "sysctls": sysctls, "summary": summary}


GUEST = {"bookworm": {"release": "bookworm", "kernel": "6.1.0-57-amd64", "keepalived": "2.2.7"},
         "trixie": {"release": "trixie", "kernel": "6.12.48-amd64", "keepalived": "2.3.3"}}


def release(name: str, cells: list[Cell], sysctl: dict) -> Release:
    return Release(name, GUEST[name], sysctl, cells, None, f"answers-{name}.html")


@pytest.fixture
def lab(raw_lab):
    return parse_lab(raw_lab)  # lab.toml: expire_nodest_conn = 1, socket_mode = fresh


def test_overlapping_intervals_and_equal_sysctls_report_no_difference(lab):
    data = compare_releases([release("bookworm", grid("bookworm", SLOW), probe(False)),
                             release("trixie", grid("trixie", NEAR), probe(False))], lab)
    assert data["differences"] == []
    page = render_releases(data)
    assert 'data-difference="none"' in page
    assert "Debian trixie · kernel 6.12.48-amd64 · Keepalived 2.3.3" in page
    assert 'href="answers-bookworm.html"' in page


def test_a_cell_whose_intervals_separate_is_named_with_the_release_its_setting_holds_for(lab):
    data = compare_releases([release("bookworm", grid("bookworm", SLOW), probe(False)),
                             release("trixie", grid("trixie", FAST), probe(False))], lab)
    [diff] = data["differences"]
    assert diff["what"] == "kill-one [expire_nodest_conn=0, socket_mode=reuse]"
    assert "failover window 9100 ms [9000 ms–9200 ms], n=5" in diff["text"]
    assert "lower on trixie" in diff["text"]
    # on bookworm expire_nodest_conn = 1 is better than 0 with reused ports; on trixie they do not differ
    assert diff["recommendation"] == "expire_nodest_conn = 1 (kill-one, socket_mode=reuse)"
    assert diff["holds_for"] == ["bookworm"]
    page = render_releases(data)
    assert re.search(r"kill-one \[expire_nodest_conn=0, socket_mode=reuse\]</b>: .*holds for: bookworm\.",
                     page)


def test_a_sysctl_that_behaves_otherwise_is_named_per_case(lab):
    data = compare_releases([release("bookworm", grid("bookworm", SLOW), probe(False)),
                             release("trixie", grid("trixie", SLOW), probe(True, extra="est_nice"))], lab)
    diffs = {(d["what"], d["case"]): d for d in data["differences"]}
    assert set(diffs) == {("net.ipv4.vs.conn_reuse_mode", "child netns, unprivileged user namespace"),
                          ("net.ipv4.vs.est_nice", "init namespace"),
                          ("net.ipv4.vs.est_nice", "child netns, init user namespace"),
                          ("net.ipv4.vs.est_nice", "child netns, unprivileged user namespace")}
    reuse = diffs[("net.ipv4.vs.conn_reuse_mode", "child netns, unprivileged user namespace")]
    assert reuse["text"] == "bookworm: exists, read-only; trixie: exists, writable"
    assert reuse["holds_for"] == ["trixie"]
    est_nice = diffs[("net.ipv4.vs.est_nice", "init namespace")]
    assert est_nice["text"] == "bookworm: –; trixie: exists, writable"
    # the per-sysctl table: the union of names, one column per release x case, "–" where absent
    rows = {r["name"]: r["cells"] for r in data["sysctl"]["rows"]}
    assert rows["est_nice"][:3] == ["–", "–", "–"] and rows["est_nice"][3] == "exists, writable"
    assert len(rows["conn_reuse_mode"]) == 6


def test_the_removal_on_exit_cell_and_the_grid_are_shown_per_release(lab):
    exit_slow = grid("trixie", SLOW)
    exit_slow[-1] = cell("trixie-exit", "kill-one", {"check.removal_on_exit": True}, SLOW, [900] * 5)
    data = compare_releases([release("bookworm", grid("bookworm", SLOW), probe(False)),
                             release("trixie", exit_slow, probe(False))], lab)
    [diff] = data["differences"]
    assert diff["what"] == "kill-one [removal_on_exit=true]"
    assert ("failed queries per fault 30 [30–30], n=5 (95 % CI 30–30) on bookworm against "
            "900 [900–900], n=5 (95 % CI 900–900) on trixie: lower on bookworm") in diff["text"]
    # against lab.toml's own run (expire_nodest_conn 1, fresh ports: 300 ms) it is worse on trixie only
    assert diff["recommendation"] == "lab.toml's settings" and diff["holds_for"] == ["trixie"]
    assert len(data["grid"]) == 9 and data["grid"][-1]["removal"]
    page = render_releases(data)
    assert page.count("<tr data-removal-on-exit>") == 1
    assert "runs/trixie-exit/report.html" in page


def test_the_check_cost_sentences_of_each_release_are_on_the_page(lab):
    from chaos.check_cost import summarize

    raw = {"misc": {"nslookup": [{"resolver": "rs1", "wall_ms": 320, "cpu_ms": 330, "exit": 0}]},
           "live_resolvers": ["rs1"],
           "in_process": [{"resolver": "rs1", "wall_ms": 1.0, "cpu_ms": 0.5, "ok": True}],
           "keepalived": {"measured": False, "reason": "no Keepalived"}}
    with_cost = Release("trixie", GUEST["trixie"], None, [], summarize(raw, 0.5, 3, 2), "answers-trixie.html")
    page = render_releases(compare_releases([release("bookworm", [], None), with_cost], lab))
    assert "A MISC_CHECK with nslookup costs 330 ms of CPU" in page
    assert "not probed" in page and "No fault cell completed on any release" in page
    assert page.count("Not measured.") == 1  # bookworm's check cost


def test_the_page_is_written_from_each_releases_files(lab, tmp_path):
    import json

    from bench.synthetic import meta_for, write_planted_run
    from reports.releases import read_release, write_releases

    releases = []
    for name in ("bookworm", "trixie"):
        run = write_planted_run(tmp_path / "runs" / f"{name}-kill", f"{name}-kill", {NODEST: 0})
        matrix = tmp_path / "matrix" / name / "matrix.json"
        matrix.parent.mkdir(parents=True)
        matrix.write_text(json.dumps({"suite": "releases", "cells": [
            {"experiment": "kill-one", "settings": {NODEST: 0}, "overrides": {}, "slug": "k",
             "run_dir": str(run), "status": "completed"}]}))
        probe_run = tmp_path / "runs" / f"{name}-probe"
        probe_run.mkdir()
        (probe_run / "meta.json").write_text(json.dumps({**meta_for("p", "sysctl-namespaces"),
                                                         "guest": GUEST[name]}))
        (probe_run / "probe_sysctl_namespaces.json").write_text(json.dumps(probe(name == "trixie")))
        answers = tmp_path / f"answers-{name}.html"
        releases.append(read_release(name, matrix, probe_run / "probe_sysctl_namespaces.json", None, answers,
                                     tmp_path / "releases.html"))
    page = write_releases(releases, lab, tmp_path / "releases.html").read_text()
    assert "Debian trixie · kernel 6.12.48-amd64" in page and 'href="answers-trixie.html"' in page
    assert 'href="runs/bookworm-kill/report.html"' in page  # the cell's run, linked from the page's dir
    assert 'data-difference="net.ipv4.vs.conn_reuse_mode"' in page


def test_a_fault_no_client_traffic_reached_is_shown_but_not_compared(lab):
    trixie = grid("trixie", FAST)
    lucky = trixie[1]  # kill-one, expire_nodest_conn 0, reused ports
    trixie[1] = Cell(lucky.run_id, lucky.experiment, lucky.settings, lucky.overrides,
                     {**lucky.summary, "answers_by_resolver": {"rs1": 1000, "rs2": 0}}, lucky.href)
    data = compare_releases([release("bookworm", grid("bookworm", SLOW), probe(False)),
                             release("trixie", trixie, probe(False))], lab)
    assert data["differences"] == []
    assert data["grid"][1]["releases"][1]["unexercised"] and "not compared" in render_releases(data)


def test_sysctls_that_differ_alike_are_named_together(lab):
    """Bookworm's unprivileged netns has no IPVS sysctls, trixie's has them all: one difference for the
    case naming every sysctl, not one per sysctl; one that is not writable anywhere recommends nothing."""
    old, new = probe(False, extra="est_cpulist"), probe(False, extra="est_cpulist")
    for entry in old["sysctls"].values():
        entry["child_unpriv_userns"] = {"exists": False, "value": None}
    new["sysctls"]["expire_nodest_conn"]["child_unpriv_userns"]["writable"] = True
    old["sysctls"].pop("est_cpulist")
    for case in new["sysctls"]["est_cpulist"].values():
        case.update(writable=None, leak_tested=False, not_changed="a change restarts the kthreads")
    data = compare_releases([release("bookworm", grid("bookworm", SLOW), old),
                             release("trixie", grid("trixie", SLOW), new)], lab)
    unpriv = [d for d in data["differences"] if d["case"] == "child netns, unprivileged user namespace"]
    assert [(d["what"], d["holds_for"]) for d in unpriv] == [
        ("net.ipv4.vs.conn_reuse_mode", []),  # exists on trixie, read-only: nothing to recommend
        ("net.ipv4.vs.est_cpulist", []),
        ("net.ipv4.vs.expire_nodest_conn", ["trixie"])]
    page = render_releases(data)
    assert "No recommendation: not writable, or not written by the probe, in any release." in page
    both = [d for d in data["differences"] if d["case"] == "init namespace"]
    assert [d["what"] for d in both] == ["net.ipv4.vs.est_cpulist"]
    alike = probe(True)
    alike["sysctls"]["expire_nodest_conn"]["child_unpriv_userns"]["writable"] = True
    many = compare_releases([release("bookworm", grid("bookworm", SLOW), old),
                             release("trixie", grid("trixie", SLOW), alike)], lab)["differences"]
    assert [d["what"] for d in many if d["case"].startswith("child netns, unp")] == [
        "net.ipv4.vs.* (2: conn_reuse_mode, expire_nodest_conn)"]
