"""Experiment files: every shipped one loads into the model a suite cell can override.

Each bad input's exact one-line message: tests/golden/errors/experiments.txt (tests/test_golden_errors.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from chaos.experiment import available, lab_for, load_experiment
from lab.model.errors import LabError
from lab.model.parse import parse_lab

GOOD = """\
title: Kill one
extensions:
  - name: dnslab
    load: {rate: 200, socket_mode: reuse}
    overrides:
      sysctl: {net.ipv4.vs.expire_nodest_conn: 0}
    timing: {warmup_s: 1, steady_s: 4, recover_s: 5}
    window_s: 2
steady-state-hypothesis:
  probes:
    - type: probe
      name: ok ratio
      tolerance: [0.999, 1.0]
      provider: {type: python, module: chaos.ctk.probes, func: success_ratio}
method:
  - type: action
    name: kill rs2
    provider: {type: python, module: chaos.ctk.actions, func: kill_resolver, arguments: {resolver: rs2}}
  - type: action
    name: restart rs2
    pauses: {before: 6}
    provider: {type: python, module: chaos.ctk.actions, func: restart_resolver, arguments: {resolver: rs2}}
rollbacks:
  - type: action
    name: ensure rs2
    provider: {type: python, module: chaos.ctk.actions, func: start_resolver, arguments: {resolver: rs2}}
"""


@pytest.fixture
def lab(raw_lab):
    return parse_lab(raw_lab)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.mark.parametrize("name", available())
def test_every_shipped_experiment_loads(name, lab):
    exp = load_experiment(name, lab)
    assert exp.title and exp.name == name
    lab_for(exp, lab)  # its overrides are valid lab settings


def test_good_file_parses_to_the_model(tmp_path, lab):
    exp = load_experiment(write(tmp_path, GOOD), lab)
    assert [a.call.func for a in exp.method] == ["kill_resolver", "restart_resolver"]
    assert exp.method[1].before == 6 and exp.timing.recover_s == 5 and exp.window_s == 2
    assert exp.hypothesis[0].low == 0.999
    run_lab = lab_for(exp, lab)
    assert run_lab.load.socket_mode == "reuse" and run_lab.load.rate == 200
    assert dict(run_lab.sysctl)["net.ipv4.vs.expire_nodest_conn"] == "0"


def test_a_suite_cell_overrides_the_experiments_own_settings(tmp_path, lab):
    exp = load_experiment(write(tmp_path, GOOD), lab)
    cell = {"load": {"socket_mode": "fresh"}, "check": {"delay_loop": 6}}
    run_lab = lab_for(exp, lab, cell)
    assert run_lab.load.socket_mode == "fresh" and run_lab.load.rate == 200
    assert run_lab.check.delay_loop == 6


def test_unknown_experiment_lists_the_known_ones(lab):
    with pytest.raises(LabError, match=r"no experiment 'nope'.*known: .*kill-one"):
        load_experiment("nope", lab)
