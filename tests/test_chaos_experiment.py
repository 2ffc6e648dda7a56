"""Experiment files: every shipped one loads; bad ones fail with one line naming file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from chaos.experiment import available, lab_for, load_experiment
from lab.config import parse_lab
from lab.errors import LabError

GOOD = """\
title: Kill one
configuration:
  load: {rate: 200, socket_mode: reuse}
  overrides:
    sysctl: {net.ipv4.vs.expire_nodest_conn: 0}
  timing: {warmup_s: 1, steady_s: 4, recover_s: 5}
steady-state-hypothesis:
  window_s: 2
  probes:
    - type: probe
      name: ok ratio
      tolerance: [0.999, 1.0]
      provider: {type: python, module: chaos.probes, func: success_ratio}
method:
  - type: action
    name: kill rs2
    at: 0
    provider: {type: python, module: chaos.actions, func: kill_resolver, arguments: {resolver: rs2}}
  - type: action
    name: restart rs2
    pauses: {before: 6}
    provider: {type: python, module: chaos.actions, func: restart_resolver, arguments: {resolver: rs2}}
rollbacks:
  - type: action
    name: ensure rs2
    provider: {type: python, module: chaos.actions, func: start_resolver, arguments: {resolver: rs2}}
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


@pytest.mark.parametrize(("old", "new", "message"), [
    ("func: kill_resolver", "func: kil_resolver",
     r":\d+: method\[0\]\.provider\.func: unknown function 'kil_"),
    ("module: chaos.actions, func: kill", "module: os, func: kill",
     r"method\[0\]\.provider\.module: unknown"),
    ("{resolver: rs2}}\n  - type: action\n    name: restart", "{resolver: rs9}}\n  - type: action\n"
     "    name: restart", r":\d+: method\[0\]\.provider\.arguments\.resolver: no resolver named 'rs9'"),
    ("arguments: {resolver: rs2}}\n  - type: action\n    name: restart",
     "arguments: {resolver: rs2, signal: 9}}\n  - type: action\n    name: restart",
     r"method\[0\]\.provider\.arguments: kill_resolver: got an unexpected keyword argument 'signal'"),
    ("tolerance: [0.999, 1.0]", "tolerance: high", r"probes\[0\]\.tolerance: must be a range"),
    ("socket_mode: reuse", "socket_mode: sometimes", r"configuration\.overrides: .*socket_mode"),
    ("recover_s: 5", "recover_s: -5", r"configuration\.timing\.recover_s: must be a number >= 0"),
    ("title: Kill one", "title: Kill one\nsurprise: 1", r":2: surprise: unknown key"),
    ("    pauses: {before: 6}", "    at: -1", r"method\[1\]\.at: must be a number"),
    ("    name: ensure rs2\n", "    name: ensure rs2\n    at: 3\n",
     r"rollbacks\[0\]: rollbacks run right away"),
])
def test_bad_input_is_one_line_naming_line_and_key(tmp_path, lab, old, new, message):
    assert old in GOOD
    with pytest.raises(LabError, match=message) as err:
        load_experiment(write(tmp_path, GOOD.replace(old, new)), lab)
    assert "\n" not in str(err.value)


def test_malformed_yaml_names_the_line(tmp_path, lab):
    with pytest.raises(LabError, match=r"exp\.yaml:3: malformed YAML: found character '\\t'"):
        load_experiment(write(tmp_path, "title: x\nmethod:\n\t- a\n"), lab)


def test_at_going_backwards_is_rejected(tmp_path, lab):
    text = GOOD.replace("    pauses: {before: 6}", "    at: 5").replace("    at: 0", "    at: 8")
    with pytest.raises(LabError, match=r"method: activity 1 \('restart rs2'\) at \+5 s comes before"):
        load_experiment(write(tmp_path, text), lab)


def test_a_probe_in_the_method_must_be_a_method_probe(tmp_path, lab):
    text = GOOD.replace("type: action\n    name: kill rs2", "type: probe\n    name: kill rs2")
    with pytest.raises(LabError, match=r"method\[0\]\.provider\.module: a probe here must come from"):
        load_experiment(write(tmp_path, text), lab)
