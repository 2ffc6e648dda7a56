"""Chaos actions on local processes: a real Unbound on 127.0.0.x (kill, stop/cont, terminate) and a
network namespace of our own (link down/up with its routes), driven through an invoke Context."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query
import pytest
from invoke import Config, Context

from chaos import actions
from lab.model.parse import merge, parse_lab, with_overrides
from lab.render.files import render_unbound
from tests.fakeguest import action_call

pytestmark = pytest.mark.integration
ADDRESS = "127.0.0.41"
PORT = 5391
NETNS = "dnslabtest-rs1"


def local() -> Context:
    """A local Context that never reads our stdin."""
    return Context(Config(overrides={"run": {"in_stream": False}}))


@pytest.fixture
def lab(raw_lab):
    raw = merge(raw_lab, {"network": {"subnet": "127.0.0.0/24", "vip": "127.0.0.100",
                                      "director": "127.0.0.254", "client": "127.0.0.200"}})
    raw["resolvers"] = [{"name": "rs1", "address": ADDRESS}]
    return parse_lab(raw)


@pytest.fixture
def unbound(lab, tmp_path: Path):
    """A real Unbound for rs1 on 127.0.0.41; its PID in tmp_path/rs1.pid like systemd's MainPID."""
    if not shutil.which("unbound"):
        pytest.skip("unbound is not installed")
    conf = tmp_path / "unbound.conf"
    conf.write_text(render_unbound(lab, lab.resolvers[0], port=PORT, username="")
                    .replace('directory: "/etc/unbound"', f'directory: "{tmp_path}"'))
    proc = subprocess.Popen(["unbound", "-d", "-c", str(conf)], stderr=subprocess.DEVNULL)
    (tmp_path / "rs1.pid").write_text(f"{proc.pid}\n")
    for _ in range(100):
        if answers():
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("unbound did not start")
    yield proc
    if proc.poll() is None:
        proc.send_signal(18)  # SIGCONT, in case a test left it stopped
        proc.kill()
    proc.wait()


def answers() -> bool:
    try:
        reply = dns.query.udp(dns.message.make_query("who.lab.test", "TXT"), ADDRESS, port=PORT, timeout=0.3)
    except (dns.exception.Timeout, OSError):
        return False
    return reply.answer[0][0].strings == (b"rs1",)


def target(lab, tmp_path: Path) -> actions.Target:
    layout = actions.Layout(resolver_unit="{name}", pids=str(tmp_path), resolver_netns=NETNS)
    return actions.Target(local(), lab, layout)


def test_kill_resolver_sigkills_it_and_records_the_event(lab, unbound, tmp_path):
    before = time.time_ns()
    out = actions.kill_resolver(target(lab, tmp_path), resolver="rs1")
    assert unbound.wait(timeout=5) == -9
    assert before <= out.t_ns <= time.time_ns()
    event = out.event("fault")
    assert event["kind"] == "fault" and event["action"] == "kill_resolver" and event["target"] == "rs1"
    assert event["detail"]["real_server"] == f"{ADDRESS}:53" and event["detail"]["pid"] == unbound.pid
    assert out.undo == (actions.Undo("start_resolver", {"resolver": "rs1"}),)
    assert not answers()


def test_stop_then_cont_hangs_and_resumes_the_resolver(lab, unbound, tmp_path):
    t = target(lab, tmp_path)
    out = actions.stop_resolver(t, resolver="rs1")
    time.sleep(0.1)
    state = Path(f"/proc/{unbound.pid}/stat").read_text().split(")")[1].split()[0]
    assert state == "T" and not answers()
    undo = out.undo[0]
    assert undo.func == "cont_resolver"
    back = actions.run_undo(t, undo)
    assert back.t_ns > out.t_ns
    assert answers()


def test_terminate_resolver_lets_it_exit_cleanly(lab, unbound, tmp_path):
    actions.terminate_resolver(target(lab, tmp_path), resolver="rs1")
    assert unbound.wait(timeout=10) == 0


def test_an_action_on_a_dead_process_fails_in_one_line(lab, unbound, tmp_path):
    (tmp_path / "rs1.pid").write_text("0\n")
    with pytest.raises(actions.ActionError, match="no running process for rs1") as err:
        actions.kill_resolver(target(lab, tmp_path), resolver="rs1")
    assert "\n" not in str(err.value)


@pytest.fixture
def netns(lab):
    """A namespace of our own holding rs1's address on a veth, with an extra route through it."""
    run = local().run
    run(f"ip netns del {NETNS}", warn=True, hide=True)  # left over from an interrupted run
    if run(f"ip netns add {NETNS}", warn=True, hide=True).exited:
        pytest.skip("cannot create network namespaces here")
    try:
        run(f"ip -n {NETNS} link add v0 type veth peer name v1", hide=True)
        run(f"ip -n {NETNS} addr add {ADDRESS}/24 dev v0", hide=True)
        run(f"ip -n {NETNS} link set v1 up && ip -n {NETNS} link set v0 up", hide=True)
        run(f"ip -n {NETNS} route add 198.51.100.0/24 dev v0", hide=True)
        yield NETNS
    finally:
        run(f"ip netns del {NETNS}", warn=True, hide=True)


def test_link_down_then_up_restores_link_and_routes(lab, netns, tmp_path):
    t = target(lab, tmp_path)
    run = local().run
    out = actions.link_down(t, resolver="rs1")
    assert out.detail["dev"] == "v0" and out.detail["real_server"] == f"{ADDRESS}:53"
    assert "state DOWN" in run(f"ip -n {netns} link show v0", hide=True).stdout
    assert "198.51.100.0/24" not in run(f"ip -n {netns} route", hide=True).stdout
    actions.run_undo(t, out.undo[0])
    assert "DOWN" not in run(f"ip -n {netns} link show v0", hide=True).stdout.split("<")[1].split(">")[0]
    assert "198.51.100.0/24 dev v0" in run(f"ip -n {netns} route", hide=True).stdout


def test_set_sysctl_keeps_the_previous_value_for_rollback(lab, netns, tmp_path):
    """Our own namespace stands in for the director's `lb` namespace: set a sysctl there, then undo."""
    t = actions.Target(_InNs(netns), with_overrides(lab, {"network": {"keepalived_netns": "lb"}}))
    read = f"ip netns exec {netns} sysctl -n net.ipv4.ip_default_ttl"
    out = actions.set_sysctl(t, name="net.ipv4.ip_default_ttl", value=77)
    assert local().run(read, hide=True).stdout.strip() == "77"
    assert out.detail["previous"] == "64" and out.detail["netns"] == "lb"
    assert out.undo == (actions.Undo("set_sysctl", {"name": "net.ipv4.ip_default_ttl", "value": "64"}),)
    actions.run_undo(t, out.undo[0])
    assert local().run(read, hide=True).stdout.strip() == "64"


class _InNs:
    """A Context whose `ip netns exec lb` runs in our test namespace instead."""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    def run(self, cmd: str, **kw):
        cmd = cmd.replace("ip netns exec lb ", f"ip netns exec {self.ns} ")  # a command, or the script:
        return local().run(cmd.replace("actions.sh sysctl lb ", f"actions.sh sysctl {self.ns} "), **kw)


FAULTS = {  # every action that leaves something to undo, with arguments an experiment could give
    "kill_resolver": {"resolver": "rs1"}, "terminate_resolver": {"resolver": "rs1"},
    "unit_stop_resolver": {"resolver": "rs1"}, "stop_resolver": {"resolver": "rs1"},
    "link_down": {"resolver": "rs1"}, "netem": {"resolver": "rs1", "delay_ms": 50},
    "kill_keepalived": {}, "set_sysctl": {"name": "net.ipv4.vs.conntrack", "value": 0},
    "set_udp_timeout": {"seconds": 5}, "switch_check": {"delay_loop": 2},
}


class _Guest:
    """Answers an action's script with a time and the values it reads (a PID, a route, timeouts)."""

    def run(self, cmd: str, **_kw):
        from types import SimpleNamespace

        if cmd.startswith("ip -n") and "addr show" in cmd:
            out = f"2: v0    inet {ADDRESS}/24 scope global v0\n"
        elif cmd.startswith("ip -n") and "route show" in cmd:
            out = "198.51.100.0/24 scope link\n"
        elif action_call(cmd)[0] == "udp_timeout":
            out = f"{time.time_ns()}\n900 120 300\n"
        else:
            out = f"{time.time_ns()}\n1\n"
        return SimpleNamespace(exited=0, stdout=out, stderr="")


def test_every_fault_has_an_undo_known_before_it_runs(lab, monkeypatch):
    """What the runner logs before a fault undoes the same things as the fault's own undo: the same
    calls, with the values the action would read replaced by the lab's (chaos.undo_log)."""
    from lab.ops import deploy

    monkeypatch.setattr(deploy, "deploy", lambda *a, **k: None)
    t = actions.Target(_Guest(), lab)
    for func, arguments in FAULTS.items():
        planned = actions.planned_undo(t, func, arguments)
        actual = actions.ACTIONS[func](t, **arguments).undo
        assert [u.func for u in planned] == [u.func for u in actual], func
        assert planned, func
    sysctl = actions.planned_undo(t, "set_sysctl", FAULTS["set_sysctl"])
    assert sysctl == (actions.Undo("set_sysctl", {"name": "net.ipv4.vs.conntrack", "value": "1"}),)
    assert actions.planned_undo(t, "set_udp_timeout", {"seconds": 5})[0].arguments == {"seconds": 300}
    assert actions.planned_undo(t, "restart_resolver", {"resolver": "rs1"}) == ()


def test_a_sysctl_the_lab_leaves_alone_is_undone_to_its_value_before_the_fault(lab, netns, tmp_path):
    t = actions.Target(_InNs(netns), with_overrides(lab, {"network": {"keepalived_netns": "lb"}}))
    planned = actions.planned_undo(t, "set_sysctl", {"name": "net.ipv4.ip_default_ttl", "value": 77})
    assert planned == (actions.Undo("set_sysctl", {"name": "net.ipv4.ip_default_ttl", "value": "64"}),)


@pytest.mark.parametrize(("out", "detail"), [
    ("policy 1796117215123456789", {"started_by": "policy", "started_ns": 1796117215123456789}),
    ("runner 1796117215123456789", {"started_by": "runner", "started_ns": 1796117215123456789}),
    ("", {}),  # systemd prints nothing after the instant
    ("policy -62135596800000000000", {}),  # a container never started: StartedAt 0001-01-01
    ("someone 1", {}),
])
def test_the_restart_actions_report_says_who_started_the_container_and_when(out, detail):
    from chaos.actions import started_detail

    assert started_detail(out) == detail
