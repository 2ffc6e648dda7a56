"""`fab demo` (`make demo`): the standard suite on a systemd lab gets the compose part (two timed deploys of
labs/compose.toml, the standard-compose and standard-seed suites) between the probes and its own suite,
then reports/compose.html and a section of the answers page; other suites and compose labs do not. With
fakes for everything that would boot or measure (no VM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dnslab import compose_part, demo
from lab.model.errors import ActionFailed
from lab.model.parse import parse_lab
from lab.ssh.endpoint import Endpoint
from reports.index import Section
from tests.fakedeploy import Deployed


@pytest.fixture
def calls(tmp_path, monkeypatch):
    """Every stage the demo reaches, as (stage, what it ran on), with state under tmp_path."""
    import lab.ops.deploy
    import lab.providers
    import reports.answers
    import reports.compose_page

    monkeypatch.setenv("DNSLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("DNSLAB_RUNS", str(tmp_path / "reports" / "runs"))
    seen: list[tuple[str, str]] = []
    deploys = iter([Deployed(3), Deployed(30), Deployed(0)])

    class Image:
        qcow2 = Path("dnslab.qcow2")

    endpoint = Endpoint(host="127.0.0.1", port=2222, user="root", key="", known_hosts=())
    monkeypatch.setattr(lab.providers, "lab_image", lambda lab: seen.append(("image", "")) or Image())
    monkeypatch.setattr(lab.providers, "ensure_up", lambda lab: seen.append(("up", "")) or endpoint)
    monkeypatch.setattr(lab.providers, "open_lab", lambda e: object())

    def deploy(lab, conn):
        seen.append(("deploy", f"{lab.stack.runtime} {len(lab.resolvers)}"))
        return next(deploys)
    monkeypatch.setattr(lab.ops.deploy, "deploy", deploy)

    def probe(lab, conn, experiment, *, tag=""):
        seen.append((f"probe {experiment}", lab.stack.runtime))
        return tmp_path / f"{experiment}.json"
    monkeypatch.setattr(demo, "probe", probe)

    def suite(lab, conn, name, *, tag=""):
        seen.append((f"suite {name}", f"{lab.stack.runtime} {len(lab.resolvers)}"))
        out = tmp_path / name / "matrix.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"cells": [{"status": "completed"}]}))
        return out
    monkeypatch.setattr(demo, "run_suite", suite)
    monkeypatch.setattr(compose_part, "run_suite", suite)

    def compose_page(compose, seed, reference, deploy_json, out):
        seen.append(("compose page", f"{compose.parent.name} {seed.parent.name} {reference.parent.name}"))
        figures = json.loads(deploy_json.read_text())
        assert (figures["compose_up_s"], figures["ready_s"], figures["fresh_vm"]) == (20.0, 3.0, False)
        return out, {"answers": {}}
    monkeypatch.setattr(reports.compose_page, "write_compose", compose_page)
    monkeypatch.setattr(reports.compose_page, "headlines", lambda data: ["a compose headline"])
    monkeypatch.setattr(reports.compose_page, "summary_section",
                        lambda data, href: Section("The compose runtime", href))

    def answers(matrix_json, probe_json, lab, runs, out, cost_json, extra=()):
        seen.append(("answers", ",".join(f"{s.title}: {s.html}" for s in extra)))
        return out, reports.answers.answer([], None, lab)
    monkeypatch.setattr(reports.answers, "write_answers", answers)
    return seen


BEFORE = [("image", ""), ("up", ""), ("deploy", "systemd 3"), ("probe sysctl-namespaces", "systemd"),
          ("probe check-cost", "systemd")]


def test_the_standard_demo_runs_the_compose_part_before_its_own_suite(raw_lab, calls, capsys):
    page = demo.run_demo(parse_lab(raw_lab, "lab.toml"))
    assert calls == [*BEFORE, ("deploy", "compose 3"), ("deploy", "compose 3"),
                     ("suite standard-compose", "compose 3"), ("suite standard-seed", "compose 2"),
                     ("suite standard", "systemd 3"),
                     ("compose page", "standard-compose standard-seed standard"),
                     ("answers", "The compose runtime: compose.html")]
    assert page.name == "index.html"
    out = capsys.readouterr()
    assert "compose: a compose headline" in out.out and "with its compose part" in out.err
    for stage in ("deploy (compose)", "deploy (compose) again", "standard-compose suite", "compose answers"):
        assert stage in out.err, stage


@pytest.mark.parametrize("suite", ["quick", "nodest"])
def test_other_suites_have_no_compose_part(raw_lab, calls, suite):
    demo.run_demo(parse_lab(raw_lab, "lab.toml"), suite=suite)
    assert calls == [*BEFORE, (f"suite {suite}", "systemd 3"), ("answers", "")]


def test_a_compose_lab_has_no_compose_part(raw_lab, calls):
    """The standard suite on a compose lab measures compose itself: no systemd reference to set it against."""
    raw_lab["stack"] = {**raw_lab.get("stack", {}), "runtime": "compose"}
    raw_lab["network"]["ipvlan_mode"] = "l3"
    lab = parse_lab(raw_lab, "lab.toml")
    assert lab.stack.runtime == "compose"
    assert not compose_part.has_part(lab, "standard")


def test_a_host_of_the_operators_gets_no_compose_part(raw_lab):
    """The ssh provider reaches a host that need not have Docker: the compose part is the lab image's."""
    raw_lab["vm"]["provider"] = "ssh"
    raw_lab["ssh"]["host"] = "192.0.2.10"
    assert not compose_part.has_part(parse_lab(raw_lab, "lab.toml"), "standard")


def test_a_failed_compose_deploy_stops_the_demo_in_one_line(raw_lab, calls, monkeypatch):
    import lab.ops.deploy

    broken = iter([Deployed(3), Deployed(30, failed=1)])
    monkeypatch.setattr(lab.ops.deploy, "deploy", lambda lab, conn: next(broken))
    failed = r"compose\.toml: deploy failed at docker: daemon running: no daemon$"
    with pytest.raises(ActionFailed, match=failed):
        demo.run_demo(parse_lab(raw_lab, "lab.toml"))


def test_the_compose_labs_run_on_the_given_labs_machine(raw_lab):
    raw_lab["ssh"]["port"] = 2200
    given = parse_lab(raw_lab, "lab.toml")
    compose, seed = compose_part.compose_labs(given)
    for lab in (compose, seed):
        assert (lab.stack.runtime, lab.ssh.port, lab.vm.provider) == ("compose", 2200, given.vm.provider)
    assert (len(compose.resolvers), len(seed.resolvers)) == (3, 2)
