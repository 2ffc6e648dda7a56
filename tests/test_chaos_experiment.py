"""Experiment files: every shipped one loads; bad ones fail with one line naming file, line and key."""

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


@pytest.mark.parametrize(("old", "new", "message"), [
    ("func: kill_resolver", "func: kil_resolver",
     r":\d+: method\[0\]\.provider\.func: unknown function 'kil_"),
    ("module: chaos.ctk.actions, func: kill", "module: os, func: kill",
     r"method\[0\]\.provider\.module: unknown"),
    ("{resolver: rs2}}\n  - type: action\n    name: restart", "{resolver: rs9}}\n  - type: action\n"
     "    name: restart", r":\d+: method\[0\]\.provider\.arguments\.resolver: no resolver named 'rs9'"),
    ("arguments: {resolver: rs2}}\n  - type: action\n    name: restart",
     "arguments: {resolver: rs2, signal: 9}}\n  - type: action\n    name: restart",
     r"method\[0\]\.provider\.arguments: kill_resolver: got an unexpected keyword argument 'signal'"),
    ("tolerance: [0.999, 1.0]", "tolerance: high", r"probes\[0\]\.tolerance: must be a range"),
    ("socket_mode: reuse", "socket_mode: sometimes", r"extensions\[0\]\.overrides: .*socket_mode"),
    ("recover_s: 5", "recover_s: -5", r"extensions\[0\]\.timing\.recover_s: must be a number >= 0"),
    ("title: Kill one", "title: Kill one\nsurprise: 1", r":2: surprise: unknown key"),
    ("    pauses: {before: 6}", "    pauses: {before: -1}", r"method\[1\]\.pauses\.before: must be a number"),
    ("    name: ensure rs2\n", "    name: ensure rs2\n    pauses: {after: 3}\n",
     r"rollbacks\[0\]: rollbacks run right away"),
    # the layout before Chaos Toolkit could validate the files: one line saying where each key went
    ("extensions:\n  - name: dnslab\n", "configuration:\n  dnslab_lab: lab.toml\n  timing: {}\n"
     "extensions:\n  - name: dnslab\n", r"configuration\.timing: moved to the `dnslab` entry of `extens"),
    ("    pauses: {before: 6}", "    at: 6", r"method\[1\]\.at: use Chaos Toolkit's pauses"),
    ("module: chaos.ctk.probes", "module: chaos.probes",
     r"probes\[0\]\.provider\.module: chaos\.probes takes dnslab's own arguments; name chaos\.ctk\.pro"),
    ("func: success_ratio", "func: probe_check_cost", r"probes\[0\]\.provider: a steady-state probe must"),
    ("func: kill_resolver", "func: success_ratio", r"method\[0\]\.provider\.func: unknown function"),
])
def test_bad_input_is_one_line_naming_line_and_key(tmp_path, lab, old, new, message):
    assert old in GOOD
    with pytest.raises(LabError, match=message) as err:
        load_experiment(write(tmp_path, GOOD.replace(old, new)), lab)
    assert "\n" not in str(err.value)


def test_malformed_yaml_names_the_line(tmp_path, lab):
    with pytest.raises(LabError, match=r"exp\.yaml:3: malformed YAML: found character '\\t'"):
        load_experiment(write(tmp_path, "title: x\nmethod:\n\t- a\n"), lab)


def test_a_probe_in_the_method_must_be_a_method_probe(tmp_path, lab):
    text = GOOD.replace("type: action\n    name: kill rs2", "type: probe\n    name: kill rs2")
    with pytest.raises(LabError, match=r"method\[0\]\.provider: a probe in method must be a function of "
                                        r"chaos\.ctk\.probes \(probe_"):
        load_experiment(write(tmp_path, text), lab)
