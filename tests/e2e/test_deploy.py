"""End to end: deploy the stack in the lab VM and check issue 3's "Must show" on the real thing.

Tests run in file order and share the session VM. The module leaves the stack deployed with the
lab's own settings, as other e2e modules expect.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest

from lab.model.layout import DEPLOY_SCRIPT, KEEPALIVED_CONF, STAGE
from lab.model.parse import with_overrides
from lab.ops.deploy import deploy, teardown
from lab.ops.status import read_status
from lab.ssh import remote
from lab.ssh.endpoint import connect

pytestmark = pytest.mark.e2e

BAD_KEEPALIVED = "virtual_server 192.168.100.100 53 {\n    lb_algo bogus\n}\n"
OUTSIDE = "198.51.100.7"  # TEST-NET-2: an address outside the lab subnet, only inside the guest

# Runs in the guest (in the director's namespace): SIGKILL a resolver, poll /proc/net/ip_vs at
# 50 Hz until the real server is gone from every virtual server, start it, poll until it is back.
POLL = r"""
import json, os, signal, subprocess, sys, time
unit, hexaddr, protos = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
def live():
    seen, proto = set(), None
    for line in open("/proc/net/ip_vs"):
        f = line.split()
        if f and f[0] in ("UDP", "TCP"):
            proto = f[0].lower()
        elif len(f) >= 4 and f[0] == "->" and f[1] == hexaddr and int(f[3]) > 0:
            seen.add(proto)
    return seen
def wait(pred, limit):
    t = time.monotonic()
    while time.monotonic() - t < limit:
        if pred(live()):
            return time.monotonic()
        time.sleep(0.02)
    return None
assert live() == set(protos), live()
pid = int(subprocess.check_output(["systemctl", "show", "-p", "MainPID", "--value", unit]))
os.kill(pid, signal.SIGKILL)
t0 = time.monotonic()
t1 = wait(lambda s: not s, 15)
time.sleep(0.5)
t2 = time.monotonic()
subprocess.check_call(["systemctl", "start", unit])
t3 = wait(lambda s: s == set(protos), 20)
print(json.dumps({"removal_s": t1 and t1 - t0, "readd_s": t3 and t3 - t2}))
"""

BOOT_STATE = ("ip -o link | sed 's/^[0-9]*: //' | cut -d' ' -f1-2 | sort; ip netns list; "
              "iptables-save -t nat | grep -v '^#'; ipvsadm -Ln; "
              "systemctl list-units --all --no-legend 'dnslab*' | grep -v not-found; "
              "sysctl net.ipv4.ip_forward net.ipv4.vs.conntrack net.ipv4.vs.expire_nodest_conn; "
              "ls /etc/unbound/dnslab /etc/keepalived /etc/systemd/system/dnslab* 2>&1; true")


def sh(conn, command: str) -> str:
    result = remote.run(conn, command)
    assert result.exited == 0, f"{command}: {result.stderr}"
    return result.stdout


def in_client(command: str) -> str:
    return f"ip netns exec client {command}"


def hexaddr(ip: str) -> str:
    return "".join(f"{int(part):02X}" for part in ip.split(".")) + ":0035"


@pytest.fixture(scope="module")
def lab(lab_vm):
    return lab_vm[0]


@pytest.fixture(scope="module")
def conn(lab_vm):
    """One connection for the whole module (the module's fixtures are module-scoped)."""
    with connect(lab_vm[1]) as connection:
        yield connection


@pytest.fixture(scope="module")
def clean_state(lab, conn):
    """The VM with no trace of the stack (torn down), as text to compare with later."""
    teardown(lab, conn, verbose=False)
    return sh(conn, BOOT_STATE)


def test_deploy_from_a_clean_vm_reaches_ready(lab, conn, clean_state):
    assert "dl-lb" not in clean_state and "client" not in clean_state
    start = time.monotonic()
    summary = deploy(lab, conn)
    seconds = time.monotonic() - start
    print(f"\nFIGURE deploy from a clean VM to ready: {seconds:.1f} s ({summary.line()})")
    assert summary.failed == 0, summary.error
    assert summary.changed > 20


def test_second_deploy_changes_nothing(lab, conn):
    start = time.monotonic()
    summary = deploy(lab, conn, verbose=False)
    print(f"\nFIGURE no-change deploy: {time.monotonic() - start:.1f} s ({summary.line()})")
    assert (summary.changed, summary.failed) == (0, 0), summary.changed_steps()
    assert summary.ok > 20


@pytest.mark.parametrize(("transport", "first_port"), [("", 20001), ("+tcp", 21001)])
def test_vip_answers_from_every_resolver_in_round_robin_order(lab, conn, transport, first_port):
    # Source ports below the ephemeral range: earlier tests in this VM leave IPVS entries (300 s for
    # UDP) for ephemeral ports, and a query that reuses one goes to that entry's server, not the next.
    n = 2 * len(lab.resolvers)
    dig = (f"dig +short +time=2 +tries=1 {transport} -b {lab.network.client}#$(({first_port} + i)) "
           f"@{lab.network.vip} who.lab.test TXT")
    out = sh(conn, in_client(f"bash -c {shlex.quote(f'for i in $(seq {n}); do {dig}; done')}"))
    names = [line.strip('"') for line in out.split()]
    k = len(lab.resolvers)
    assert sorted(names[:k]) == sorted(r.name for r in lab.resolvers), names
    assert names[k:] == names[:k], f"not round robin: {names}"


def test_names_outside_the_lab_zone_are_refused(lab, conn):
    for qname in ("example.com", "lab.test.example.net"):
        out = sh(conn, in_client(f"dig +time=2 +tries=1 @{lab.network.vip} {qname} A"))
        assert "status: REFUSED" in out, out
    out = sh(conn, in_client(f"dig +time=2 +tries=1 @{lab.network.vip} www.lab.test A"))
    assert "status: NOERROR" in out and "192.0.2.10" in out


def test_a_query_from_outside_the_allowed_subnet_is_refused(lab, conn):
    rs = lab.resolvers[0]
    add = (f"ip -n client addr add {OUTSIDE}/32 dev dl-client && "
           f"ip -n {rs.name} route add {OUTSIDE}/32 dev dl-{rs.name}")
    undo = (f"ip -n client addr del {OUTSIDE}/32 dev dl-client; "
            f"ip -n {rs.name} route del {OUTSIDE}/32 dev dl-{rs.name}; true")
    try:
        sh(conn, add)
        outside = sh(conn, in_client(f"dig +time=2 +tries=1 -b {OUTSIDE} @{rs.address} who.lab.test TXT"))
        inside = sh(conn, in_client(f"dig +time=2 +tries=1 @{rs.address} who.lab.test TXT"))
    finally:
        sh(conn, undo)
    assert "status: REFUSED" in outside, outside
    assert "status: NOERROR" in inside and f'"{rs.name}"' in inside


def test_status_reports_every_server_up(lab, conn):
    data = read_status(lab, conn)
    assert {s["proto"] for s in data["ipvs"]} == set(lab.ipvs.protocols)
    assert all(c["state"] == "up" and c["weight"] == 1 for c in data["checks"])
    assert all(state == "active" for state in data["units"].values()), data["units"]
    assert data["sysctl"]["net.ipv4.vs.conntrack"] == "1"
    assert data["ipvs_timeouts"] == {"tcp": lab.ipvs.tcp_timeout, "tcpfin": lab.ipvs.tcpfin_timeout,
                                     "udp": lab.ipvs.udp_timeout}


def test_sigkill_removes_the_resolver_within_the_bound_and_restart_adds_it_back(lab, conn):
    rs = lab.resolvers[1]
    command = (f"{'ip netns exec lb ' if lab.network.director_netns else ''}python3 -c {shlex.quote(POLL)} "
               f"dnslab-resolver@{rs.name}.service {hexaddr(str(rs.address))} "
               f"{','.join(lab.ipvs.protocols)}")
    figures = json.loads(sh(conn, command).strip().splitlines()[-1])
    check = lab.check
    bound = check.removal_bound_s + 0.5
    print(f"\nFIGURE SIGKILL {rs.name}: removed from IPVS after {figures['removal_s']:.2f} s "
          f"(bound {bound:.2f} s), re-added {figures['readd_s']:.2f} s after start "
          f"[{check.type} delay_loop={check.delay_loop} retry={check.retry} "
          f"delay_before_retry={check.delay_before_retry} connect_timeout={check.connect_timeout}]")
    assert figures["removal_s"] is not None and figures["removal_s"] <= bound
    assert figures["readd_s"] is not None
    events = [c["last_event"] for c in read_status(lab, conn)["checks"] if c["resolver"] == rs.name]
    assert all("Adding service" in e for e in events), events


def test_experiment_settings_apply_in_place_with_a_reload(lab, conn):
    tuned = with_overrides(lab, {"check": {"type": "TCP_CHECK", "delay_loop": 0.3},
                                 "ipvs": {"lb_algo": "wlc", "udp_timeout": 30},
                                 "sysctl": {"net.ipv4.vs.expire_nodest_conn": 0}})
    pid_before = sh(conn, "systemctl show -p MainPID --value dnslab-keepalived").strip()
    start = time.monotonic()
    summary = deploy(tuned, conn, verbose=False)
    seconds = time.monotonic() - start
    print(f"\nFIGURE in-place settings change: {seconds:.1f} s ({summary.line()})")
    assert summary.failed == 0, summary.error
    changed = summary.changed_steps()
    assert not [n for n in changed if n.startswith(("netns", "ipvlan", "address", "link", "resolver"))]
    assert any(n.startswith("keepalived:") for n in changed)
    assert sh(conn, "systemctl show -p MainPID --value dnslab-keepalived").strip() == pid_before
    data = read_status(tuned, conn)
    assert {s["scheduler"] for s in data["ipvs"]} == {"wlc"}
    assert data["sysctl"]["net.ipv4.vs.expire_nodest_conn"] == "0"
    assert data["ipvs_timeouts"]["udp"] == 30
    back = deploy(lab, conn, verbose=False)
    assert back.failed == 0 and {s["scheduler"] for s in read_status(lab, conn)["ipvs"]} == {"rr"}


def test_a_config_the_guest_keepalived_rejects_leaves_the_old_one_running(lab, conn):
    """The guest-side guard: the runner validates with the guest's keepalived before installing."""
    pid = sh(conn, "systemctl show -p MainPID --value dnslab-keepalived").strip()
    sh(conn, f"echo '# local edit' >> {KEEPALIVED_CONF}")  # the installed copy now differs
    remote.upload(conn, {f"{STAGE}{KEEPALIVED_CONF}": BAD_KEEPALIVED.encode()})
    result = remote.run(conn, f"bash {DEPLOY_SCRIPT} up")
    assert result.exited == 1
    assert f"@@ failed file {KEEPALIVED_CONF}" in result.stdout
    assert "keepalived -t rejected the new config; the running Keepalived keeps the old one" in result.stdout
    assert "Invalid lvs_scheduler 'bogus'" in result.stdout
    assert "@@ ok systemd" not in result.stdout, "steps after the failure ran"
    assert sh(conn, "systemctl show -p MainPID --value dnslab-keepalived").strip() == pid
    assert "lb_algo bogus" not in sh(conn, f"cat {KEEPALIVED_CONF}")
    assert f"{lab.network.vip}:53 rr" in sh(conn, "ipvsadm -Ln")
    summary = deploy(lab, conn, verbose=False)
    assert summary.failed == 0 and summary.changed_steps()[0] == f"file {KEEPALIVED_CONF}"


def test_keepalived_in_its_own_namespace_variant(lab, conn):
    variant = with_overrides(lab, {"network": {"keepalived_netns": "lb"}})
    start = time.monotonic()
    summary = deploy(variant, conn, verbose=False)
    print(f"\nFIGURE variant change root -> lb namespace: {time.monotonic() - start:.1f} s "
          f"({summary.line()})")
    assert summary.failed == 0, summary.error
    assert str(lab.network.vip) not in sh(conn, "ipvsadm -Ln"), "the root namespace still has the VIP"
    assert str(lab.network.vip) in sh(conn, "ip netns exec lb ipvsadm -Ln")
    out = sh(conn, in_client(f"sh -c 'for i in 1 2 3; do dig +short +time=2 +tries=1 "
                             f"@{lab.network.vip} who.lab.test TXT; done'"))
    assert sorted(n.strip('"') for n in out.split()) == sorted(r.name for r in lab.resolvers)


def test_teardown_leaves_the_vm_as_booted_and_deploy_restores(lab, conn, clean_state):
    summary = teardown(lab, conn, verbose=False)
    assert summary.failed == 0, summary.error
    assert sh(conn, BOOT_STATE) == clean_state
    again = deploy(lab, conn, verbose=False)
    assert again.failed == 0, again.error
