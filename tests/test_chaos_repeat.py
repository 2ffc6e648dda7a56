"""Repeated faults: the method laid out N times with its settle gap, rotating the target (chaos/repeat.py),
and the one-line errors for a bad `repeat`."""

from __future__ import annotations

import pytest
import yaml

from chaos.experiment import load_experiment, parse_experiment
from chaos.timeline import schedule
from lab.model.errors import LabError
from lab.model.parse import parse_lab


def test_kill_one_repeats_five_crashes_rotating_the_resolver(raw_lab):
    exp = load_experiment("kill-one", parse_lab(raw_lab))
    steps = [(s.offset_s, s.activity.call.func, s.activity.call.arguments["resolver"], s.activity.name)
             for s in schedule(exp.method)]
    assert [s[:3] for s in steps] == [
        (0.0, "kill_resolver", "rs2"), (3.0, "restart_resolver", "rs2"),
        (5.0, "kill_resolver", "rs3"), (8.0, "restart_resolver", "rs3"),
        (10.0, "kill_resolver", "rs1"), (13.0, "restart_resolver", "rs1"),
        (15.0, "kill_resolver", "rs2"), (18.0, "restart_resolver", "rs2"),
        (20.0, "kill_resolver", "rs3"), (23.0, "restart_resolver", "rs3")]
    assert steps[0][3] == "kill_resolver rs2 #1" and steps[-1][3] == "restart_resolver rs3 #5"
    assert exp.repeat.times == 5


def _experiment(repeat: object) -> dict:
    return yaml.safe_load(f"""
title: t
extensions: [{{name: dnslab, repeat: {repeat}}}]
method:
  - {{type: action, name: kill,
     provider: {{type: python, module: chaos.ctk.actions, func: kill_resolver,
                 arguments: {{resolver: rs2}}}}}}
  - {{type: action, name: back, pauses: {{before: 2}},
     provider: {{type: python, module: chaos.ctk.actions, func: start_resolver,
                 arguments: {{resolver: rs2}}}}}}
""")


def test_without_rotate_every_repetition_hits_the_same_target_after_the_settle_gap(raw_lab):
    exp = parse_experiment(_experiment("{times: 3, settle_s: 1.5}"), parse_lab(raw_lab))
    assert [(s.offset_s, s.activity.call.arguments["resolver"]) for s in schedule(exp.method)] == [
        (0.0, "rs2"), (2.0, "rs2"), (3.5, "rs2"), (5.5, "rs2"), (7.0, "rs2"), (9.0, "rs2")]


@pytest.mark.parametrize(("repeat", "message"), [
    ("{times: 0}", "extensions[0].repeat.times: must be a whole number from 1 to 1000, got 0"),
    ("{times: 2.5}", "extensions[0].repeat.times: must be a whole number from 1 to 1000, got 2.5"),
    ("{times: 3, settle_s: -1}", "extensions[0].repeat.settle_s"),
    ("{times: 3, rotate: [rs9]}", "extensions[0].repeat.rotate: must be a list of the lab's resolvers "
                                  "(rs1, rs2, rs3), got ['rs9']"),
    ("{times: 3, every: 2}", "extensions[0].repeat.every: unknown key; known keys: times, settle_s, rotate"),
])
def test_a_bad_repeat_is_one_line_naming_the_key(raw_lab, repeat, message):
    with pytest.raises(LabError) as err:
        parse_experiment(_experiment(repeat), parse_lab(raw_lab), source="x.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)
