"""Suites: grids expand to cells; every shipped cell is valid; bad suites fail in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.experiment import load_experiment
from chaos.matrix import cells, check_cells, load_suite, setting
from lab.model.errors import LabError
from lab.model.parse import load_lab, parse_lab, with_overrides

REPO = Path(__file__).resolve().parents[1]


def test_grid_expands_experiments_times_values():
    suite = {"runs": [{"experiments": ["kill-one", "stop-one"], "overrides": {"check": {"retry": 2}},
                       "grid": {"sysctl.net.ipv4.vs.expire_nodest_conn": [0, 1],
                                "load.socket_mode": ["fresh", "reuse"]}}]}
    out = cells(suite)
    assert len(out) == 8
    first = out[0]
    assert first.experiment == "kill-one"
    assert first.overrides == {"check": {"retry": 2}, "sysctl": {"net.ipv4.vs.expire_nodest_conn": 0},
                               "load": {"socket_mode": "fresh"}}
    assert first.slug == "kill-one_expire_nodest_conn-0_socket_mode-fresh"
    assert out[-1].experiment == "stop-one" and out[-1].varied["load.socket_mode"] == "reuse"


def test_setting_keeps_the_dots_of_a_sysctl():
    assert setting("sysctl.net.ipv4.vs.conntrack", 1) == {"sysctl": {"net.ipv4.vs.conntrack": 1}}
    with pytest.raises(ValueError):
        setting("vlan", True)


@pytest.mark.parametrize("suite", ["quick", "nodest", "releases", "checks", "exit", "settings", "clients",
                                   "standard"])
def test_shipped_suites_are_valid_for_the_lab(raw_lab, suite):
    lab = parse_lab(raw_lab)
    todo = cells(load_suite(suite))
    check_cells(lab, todo)
    for cell in todo:
        with_overrides(lab, cell.overrides)


@pytest.mark.parametrize(("suite", "lab_file"), [
    ("compose", "labs/compose.toml"), ("compose-reference", "lab.toml"),
    ("seed-compose", "labs/seed-compose.toml"), ("standard-compose", "labs/compose.toml"),
    ("standard-seed", "labs/seed-compose.toml")])
def test_the_compose_suites_are_valid_for_their_labs(suite, lab_file):
    lab = load_lab(REPO / lab_file)
    check_cells(lab, cells(load_suite(suite)))


def test_make_demos_compose_part_runs_its_suites_on_the_compose_labs(raw_lab):
    """`make demo` (the standard suite) gets its compose part from dnslab/compose_part.py: each suite it
    names exists and its cells are valid on the lab it runs on, each fault cell with n >= 5."""
    from dnslab.compose_part import PARTS, compose_labs

    compose, seed = compose_labs(parse_lab(raw_lab))
    for suite, lab in zip(PARTS["standard"], (compose, seed), strict=True):
        todo = cells(load_suite(suite))
        check_cells(lab, todo)
        assert all(load_experiment(c.experiment, lab).repeat.times >= 5 for c in todo), suite


def test_standard_suite_covers_the_seed_questions():
    standard = cells(load_suite("standard"))
    varied = {key for cell in standard for key in cell.varied}
    assert {"sysctl.net.ipv4.vs.expire_nodest_conn", "load.socket_mode", "network.vlan",
            "check.removal_on_exit", "load.client"} <= varied
    assert any(c.experiment == "stop-one" for c in cells(load_suite("nodest")))  # hangs: nodest suite
    # every fault cell repeats its fault at least 5 times (issue 13); the slower grids live elsewhere
    lab = load_lab(REPO / "lab.toml")
    for cell in standard:
        exp = load_experiment(cell.experiment, lab)
        if exp.method:
            assert exp.repeat.times >= 5, cell.label
    elsewhere = {key for name in ("checks", "settings")
                 for cell in cells(load_suite(name)) for key in cell.varied}
    assert {"check.type", "check.delay_loop", "check.inhibit_on_failure", "ipvs.ops",
            "network.keepalived_netns"} <= elsewhere
    assert len(cells(load_suite("quick"))) == 2


def test_unknown_suite_and_bad_shapes(tmp_path, raw_lab):
    known = "quick, nodest, releases, checks, exit, settings, clients, standard"
    with pytest.raises(LabError, match=f"no suite named .huge.; known: {known}"):
        load_suite("huge")
    path = tmp_path / "suites.yaml"
    path.write_text("s:\n  runs:\n    - experiments: [kill-one]\n      grid: {vlan: [true]}\n")
    with pytest.raises(LabError, match=r"suites.yaml:3: s.runs\[0\].grid: key 'vlan' must be TABLE.KEY"):
        load_suite("s", path)
    path.write_text("s:\n  runs:\n    - experiments: [kill-one]\n      grid: {check.delay_loop: [-1]}\n")
    with pytest.raises(LabError, match=r"matrix cell kill-one \[delay_loop=-1\]: .*delay_loop"):
        check_cells(parse_lab(raw_lab), cells(load_suite("s", path)))


def test_an_interrupted_matrix_keeps_only_its_completed_cells(tmp_path):
    from chaos.matrix import finished_cells

    (tmp_path / "run-a").mkdir()
    cells_json = {"suite": "quick", "cells": [
        {"slug": "kill-one_socket_mode-fresh", "status": "completed", "run_dir": str(tmp_path / "run-a")},
        {"slug": "kill-one_socket_mode-reuse", "status": "failed", "run_dir": str(tmp_path / "run-b")},
        {"slug": "kill-one_x-1", "status": "completed", "run_dir": str(tmp_path / "gone")},
    ]}
    (tmp_path / "matrix.json").write_text(json.dumps(cells_json))
    assert list(finished_cells(tmp_path)) == ["kill-one_socket_mode-fresh"]
    assert finished_cells(tmp_path / "nowhere") == {}


def test_cells_equal_to_an_earlier_cell_reuse_its_run(raw_lab):
    from chaos.matrix import repeats

    lab = parse_lab(raw_lab)  # lab.toml: expire_nodest_conn = 1, inhibit_on_failure = false
    suite = {"runs": [
        {"experiments": ["kill-one"], "grid": {"sysctl.net.ipv4.vs.expire_nodest_conn": [0, 1]}},
        {"experiments": ["kill-one", "stop-one"], "grid": {"check.inhibit_on_failure": [False, True]}},
    ]}
    # kill-one with inhibit false is kill-one with expire_nodest_conn 1: both are lab.toml's lab;
    # stop-one with inhibit false is a different experiment and runs.
    assert repeats(lab, cells(suite)) == {2: 1}


def test_standard_suite_measures_each_distinct_cell_once(raw_lab):
    from chaos.matrix import repeats

    todo = cells(load_suite("standard"))
    assert repeats(parse_lab(raw_lab), todo) == {}  # no cell repeats lab.toml's: each is its own run
    assert len(todo) == 7
    clients = cells(load_suite("clients"))
    same = repeats(parse_lab(raw_lab), clients)  # removal_on_exit false is lab.toml's own for raw
    assert len(clients) == 8 and not same


def test_exit_suite_measures_each_exit_with_removal_on_exit_off_and_on(raw_lab):
    from chaos.matrix import repeats

    todo = cells(load_suite("exit"))
    settings = {(c.experiment, c.varied.get("check.removal_on_exit")) for c in todo}
    for experiment in ("kill-repeat", "terminate-repeat", "unit-stop-repeat", "stop-repeat", "all-down",
                       "crash-loop"):
        assert {(experiment, False), (experiment, True)} <= settings
    # quorum 1 is lab.toml's: that all-down cell reuses the removal-on-exit all-down run
    assert list(repeats(parse_lab(raw_lab), todo).values()) == [
        next(i for i, c in enumerate(todo) if c.experiment == "all-down" and c.varied == {
            "check.removal_on_exit": True})]


def test_releases_suite_is_the_nodest_grid_and_removal_on_exit(raw_lab):
    from chaos.matrix import repeats

    todo = cells(load_suite("releases"))
    assert len(todo) == 9
    grid = {(c.experiment, c.varied["sysctl.net.ipv4.vs.expire_nodest_conn"], c.varied["load.socket_mode"])
            for c in todo[:8]}
    assert grid == {(e, n, m) for e in ("kill-one", "stop-one") for n in (0, 1) for m in ("fresh", "reuse")}
    assert [(c.experiment, c.varied) for c in todo[8:]] == [("kill-one", {"check.removal_on_exit": True})]
    assert repeats(parse_lab(raw_lab), todo) == {}  # nine runs: no cell is another's
