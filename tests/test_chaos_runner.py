"""The runner's pure parts: the settings a run varies, steady-state verdicts, the journal."""

from __future__ import annotations

import pandas as pd

from chaos.collect import evaluate
from chaos.experiment import load_experiment
from chaos.journal import Journal, utc_iso
from chaos.runner import settings_of
from lab.model.parse import flatten, parse_lab


def test_flatten_keeps_sysctl_names_whole():
    assert flatten({"sysctl": {"net.ipv4.vs.conntrack": 1}, "load": {"rate": 5}}) == {
        "sysctl.net.ipv4.vs.conntrack": 1, "load.rate": 5}


def test_settings_of_merges_experiment_and_cell(raw_lab):
    exp = load_experiment("udp-timeout", parse_lab(raw_lab))
    settings = settings_of(exp, {"check": {"delay_loop": 1}})
    assert settings == {"sysctl.net.ipv4.vs.expire_nodest_conn": 0, "load.rate": 300, "load.users": 6,
                        "load.socket_mode": "reuse", "check.delay_loop": 1}


def test_evaluate_gives_a_verdict_per_probe(raw_lab):
    exp = load_experiment("kill-one", parse_lab(raw_lab))
    n = 1000
    records = pd.DataFrame({"t_send_ns": range(n), "latency_ms": [1.0] * n,
                            "outcome": ["ok"] * (n - 2) + ["timeout"] * 2})
    verdicts = evaluate(exp, records)
    assert verdicts["success ratio"] == {"ok": False, "value": 0.998, "tolerance": [0.999, 1.0]}
    assert verdicts["p99 latency (ms)"]["ok"] and verdicts["queries in the window"]["ok"]


def test_journal_marks_a_deviation():
    journal = Journal(experiment={"title": "t"})
    journal.record("run", {"name": "kill"}, utc_iso(), "succeeded", output={"t_ns": 1})
    out = journal.render("completed", {"before": {"x": {"ok": True}}, "after": {"x": {"ok": False}}}, {})
    assert out["deviated"] is True and out["run"][0]["status"] == "succeeded"
    assert out["start"].endswith("Z") and utc_iso(0) == "1970-01-01T00:00:00.000Z"


def test_the_load_command_carries_the_labs_load_profile(raw_lab, tmp_path, monkeypatch):
    from chaos.experiment import load_experiment
    from chaos.runner import Run
    from lab.model.parse import parse_lab, with_overrides

    monkeypatch.setenv("DNSLAB_RUNS", str(tmp_path))
    lab = with_overrides(parse_lab(raw_lab), {"load": {"window": 8, "socket_mode": "reuse", "rate": 0,
                                                       "client": "glibc", "timeout_ms": 5000, "rotate": True,
                                                       "nameservers": ["vip", "rs3", "192.168.100.99"]}})
    command = Run(lab, None, load_experiment("baseline", lab)).recorders.locust_command()
    assert "--dns-window 8" in command and "--dns-socket-mode reuse" in command
    assert "--dns-rate 0 " in command and f"--host {lab.network.vip}" in command
    assert "--dns-client glibc --dns-timeout-ms 5000 --dns-attempts 2 --dns-rotate true" in command
    assert "--dns-nameservers 192.168.100.100,192.168.100.13,192.168.100.99" in command
    assert "-u 4 -r 4" in command


def test_the_load_command_sets_every_load_knob_and_the_generator_accepts_it(raw_lab, tmp_path, monkeypatch):
    """Every [load] key reaches Locust as a flag that parse_settings reads back to the same value."""
    import argparse
    import shlex
    from dataclasses import asdict

    from chaos.experiment import load_experiment
    from chaos.runner import Run
    from lab.model.parse import parse_lab
    from loadtest.knobs import DNS_KNOBS
    from loadtest.options import parse_settings

    monkeypatch.setenv("DNSLAB_RUNS", str(tmp_path))
    lab = parse_lab(raw_lab)
    words = shlex.split(Run(lab, None, load_experiment("baseline", lab)).recorders.locust_command())
    parser = argparse.ArgumentParser()
    for knob in DNS_KNOBS:
        parser.add_argument(knob.flag, default=knob.text(knob.default))
    parser.add_argument("-u")
    parser.add_argument("-r")
    options, _ = parser.parse_known_args(words[words.index("-f") + 2:])
    settings = parse_settings(options)
    for key, value in asdict(lab.load).items():
        if key == "nameservers":
            assert settings.nameservers == ((str(lab.network.vip), 53),)
        elif key == "users":
            assert options.u == options.r == str(value)
        elif key == "window":
            assert options.dns_window == str(value)
        else:
            assert getattr(settings, key) == value, key



def test_rollback_runs_each_distinct_undo_once(raw_lab, tmp_path, monkeypatch):
    """Ten crashes leave ten identical undos (start rs2): idempotent, so one call does, and none
    when the experiment's own rollback made the same call."""
    from chaos import actions
    from chaos.runner import Run

    monkeypatch.setenv("DNSLAB_RUNS", str(tmp_path))
    lab = parse_lab(raw_lab)
    run = Run(lab, None, load_experiment("kill-repeat", lab))
    run.dir.mkdir(parents=True)
    calls = []

    def recorder(func):
        def act(target, **arguments):
            calls.append((func, arguments))
            return actions.Outcome(len(calls), func, arguments.get("resolver", "-"), {})
        return act

    monkeypatch.setattr(actions, "ACTIONS", {name: recorder(name) for name in actions.ACTIONS})
    run.undo = [actions.Undo("start_resolver", {"resolver": "rs2"})] * 10 + [
        actions.Undo("cont_resolver", {"resolver": "rs3"})]
    run.rollback()
    # the experiment's own rollback (start rs2) covers the crashes' undo; the hang's runs
    assert calls == [("start_resolver", {"resolver": "rs2"}), ("cont_resolver", {"resolver": "rs3"})]
    assert [e["kind"] for e in run.events] == ["rollback"] * 2


def test_the_timeline_counts_a_pause_from_when_the_action_ended(raw_lab, tmp_path, monkeypatch):
    """A kill that takes 0.5 s to land is followed by its restart its full pause (0.3 s) later, not
    at the restart's planned slot (which the slow kill has already passed)."""
    import time
    from dataclasses import dataclass

    from chaos.runner import Run
    from chaos.timeline import phases, schedule

    @dataclass(frozen=True)
    class A:
        name: str
        at: float | None = None
        before: float = 0.0
        after: float = 0.0

    monkeypatch.setenv("DNSLAB_RUNS", str(tmp_path))
    lab = parse_lab(raw_lab)
    run = Run(lab, None, load_experiment("kill-one", lab))
    run.dir.mkdir(parents=True)
    run.steps = schedule([A("kill", after=0.3), A("restart")])
    run.phases = phases(0, 0, 0.1, run.steps)
    run.note = lambda *a, **k: None  # type: ignore[method-assign]
    ended: dict[str, float] = {}
    started: dict[str, float] = {}

    def perform(step):
        started[step.activity.name] = time.monotonic()
        time.sleep(0.5 if step.activity.name == "kill" else 0.0)
        ended[step.activity.name] = time.monotonic()

    monkeypatch.setattr(run, "perform", perform)
    run.timeline()
    assert started["restart"] - ended["kill"] >= 0.3
    assert run.pace.slip_s >= 0.5
