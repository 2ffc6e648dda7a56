"""Faults a run can leave behind: deploy's steps that clear them and the health check that sees them.

The checks run in bash against real state of this host: a SIGSTOPped process (systemd's MainPID
stands in for a function printing its PID) and a link in a network namespace of our own. netem
needs the lab kernel (tests/e2e/test_leftovers.py).
"""

from __future__ import annotations

import signal
import subprocess
from types import SimpleNamespace

import pytest

from chaos import probes
from lab.model.parse import merge, parse_lab
from lab.ops.leftovers import health_checks, leftover_steps
from lab.ops.services import deploy_steps
from lab.render.files import render_files
from lab.render.netplan import network_plan

NS = "lftest1"  # a resolver name: its netns is NS and its ipvlan slave dl-NS (lab.render.netplan.link_name)


@pytest.fixture
def lab(raw_lab):
    raw = merge(raw_lab, {})
    raw["resolvers"] = [{"name": NS, "address": "192.168.100.11"}]
    return parse_lab(raw)


def _step(lab, words: str):
    return next(s for s in leftover_steps(lab) if words in s.name)


def _bash(script: str) -> int:
    return subprocess.run(["bash", "-c", script], capture_output=True, timeout=30).returncode


def test_a_sigstopped_resolver_fails_the_check_and_the_step_continues_it(lab):
    step = _step(lab, "not stopped")
    proc = subprocess.Popen(["sleep", "60"])
    systemctl = f"systemctl() {{ echo {proc.pid}; }}; "  # `systemctl show -p MainPID --value UNIT`
    try:
        assert _bash(systemctl + step.check) == 0, "a running process passes"
        proc.send_signal(signal.SIGSTOP)
        for _ in range(50):
            if _bash(systemctl + step.check) != 0:
                break
        assert _bash(systemctl + step.check) != 0, "a stopped one fails"
        assert _bash(systemctl + step.apply) == 0 and _bash(systemctl + step.check) == 0, "apply continues it"
        assert _bash("systemctl() { echo 0; }; " + step.check) == 0, "no process: nothing to clear"
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def netns():
    """Our own namespace NS with a veth dl-NS, as a resolver's namespace and link."""
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    if subprocess.run(["ip", "netns", "add", NS], capture_output=True).returncode:
        pytest.skip("cannot create network namespaces here")
    try:
        subprocess.run(["ip", "-n", NS, "link", "add", f"dl-{NS}", "type", "veth", "peer", "name", "v1"],
                       check=True)
        subprocess.run(["ip", "-n", NS, "link", "set", f"dl-{NS}", "up"], check=True)
        yield NS
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def test_a_link_left_down_fails_the_check_and_the_step_brings_it_up(lab, netns):
    step = _step(lab, "link")
    assert _bash(step.check) == 0
    subprocess.run(["ip", "-n", netns, "link", "set", f"dl-{NS}", "down"], check=True)
    assert _bash(step.check) != 0
    assert _bash(step.apply) == 0 and _bash(step.check) == 0


def test_nothing_to_clear_before_the_first_deploy(lab):
    """No namespace, no link, no unit yet: every leftover check passes (deploy then builds the lab)."""
    for step in leftover_steps(lab):
        if "not stopped" in step.name:
            continue  # needs systemd's answer about a unit; covered above
        assert _bash(step.check) == 0, step.name


def test_deploy_clears_leftovers_first_unless_told_not_to(lab):
    files = render_files(lab)
    names = [s.name for s in deploy_steps(lab, files, network_plan(lab))]
    leftover = [s.name for s in leftover_steps(lab)]
    assert names[2:2 + len(leftover)] == leftover, "right after retiring another runtime and topology"
    inside = [s.name for s in deploy_steps(lab, files, network_plan(lab), clear_faults=False)]
    assert not set(leftover) & set(inside), "a deploy inside an experiment leaves its faults alone"


def test_health_names_each_failing_check(lab):
    names = [name for name, _ in health_checks(lab)]
    assert any("netem" in n for n in names) and any("not stopped" in n for n in names)
    assert any(n.startswith("sysctl net.ipv4.vs.conntrack") for n in names)
    assert any(n.startswith("IPVS timeouts") for n in names)
    assert "dnslab-keepalived.service active" in names

    out = (f'{NS} "{NS}"\n@@fault resolver {NS}: no netem qdisc on dl-{NS}\n'
           "@@ipvs\nUDP  C0A86464:0035 rr\n  -> C0A8640B:0035      Masq    1      0          0\n"
           "TCP  C0A86464:0035 rr\n  -> C0A8640B:0035      Masq    1      0          0\n")
    conn = SimpleNamespace(run=lambda cmd, **kw: SimpleNamespace(stdout=out, exited=0))
    state = probes.health(conn, lab)
    assert state["resolvers"] == {NS: True} and state["ipvs_missing"] == []
    assert state["faults"] == [f"resolver {NS}: no netem qdisc on dl-{NS}"] and state["ok"] is False
    assert probes.describe_health(state) == f"these checks failed: resolver {NS}: no netem qdisc on dl-{NS}"
    healthy = probes.health(SimpleNamespace(run=lambda cmd, **kw: SimpleNamespace(
        stdout=out.replace(f"@@fault resolver {NS}: no netem qdisc on dl-{NS}\n", ""), exited=0)), lab)
    assert healthy["ok"] and probes.describe_health(healthy) == "healthy"
