"""labs/seed.toml, the operator's stack as a preset: its settings are the seed's, its files pass the real
tools, and a preset with a bad key gets the same one-line error as lab.toml (fab tasks and
`python -m lab` read both through lab.config.load_lab)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from ipaddress import IPv4Address

import pytest

from lab.model.layout import KEEPALIVED_CONF, unbound_path
from lab.model.parse import load_lab
from lab.ops.validate import validate
from lab.render.files import render_files
from tests.conftest import REPO

SEED = REPO / "labs" / "seed.toml"


@pytest.fixture(scope="module")
def seed():
    return load_lab(SEED)


def test_seed_preset_holds_the_operators_settings(seed):
    assert [(r.name, r.address) for r in seed.resolvers] == [
        ("rs1", IPv4Address("192.168.100.2")), ("rs2", IPv4Address("192.168.100.3"))]
    net = seed.network
    assert (str(net.subnet), str(net.vip), net.lower_link, net.ipvlan_mode) == (
        "192.168.100.0/24", "192.168.100.100", "eth0.53", "l3s")
    assert str(net.director) == "192.168.100.254" and net.keepalived_netns == "root"
    assert (seed.unbound.num_threads, seed.unbound.cache_min_ttl) == (2, 600)
    c = seed.check
    assert (c.type, c.delay_loop, c.delay_before_retry, c.retry, c.misc_timeout) == ("MISC_CHECK", 1, 1, 0, 1)
    assert c.misc_command == "/usr/bin/nslookup -type=a {name} {rs}"
    assert (seed.ipvs.lb_algo, seed.ipvs.protocols, seed.ipvs.udp_timeout, seed.ipvs.lvs_timeouts) == (
        "rr", ("udp",), 15, True)
    assert seed.vrrp.enabled and (seed.vrrp.virtual_router_id, seed.vrrp.priority) == (51, 150)
    assert dict(seed.sysctl)["net.ipv4.vs.conntrack"] == "1"
    assert dict(seed.sysctl)["net.ipv4.vs.expire_nodest_conn"] == "1"
    assert seed.stack.runtime == "systemd"


def test_seed_preset_renders_files_the_real_tools_accept(seed):
    files = render_files(seed)
    validate(files, seed.source)  # unbound-checkconf, keepalived -t (VRRP: in a namespace), systemd-analyze
    conf = files[KEEPALIVED_CONF].content.decode()
    for line in ("lvs_timeouts tcp 900 tcpfin 120 udp 15", "protocol UDP", "lb_kind NAT", "lb_algo rr",
                 "delay_loop 1.0", "misc_timeout 1", "retry 0", "delay_before_retry 1.0", "state MASTER",
                 'misc_path "/usr/bin/nslookup -type=a www.lab.test 192.168.100.2"',
                 'misc_path "/usr/bin/nslookup -type=a www.lab.test 192.168.100.3"'):
        assert f"    {line}\n" in conf, line
    assert "protocol TCP" not in conf
    unbound = files[unbound_path("rs1")].content.decode()
    assert "num-threads: 2\n" in unbound and "cache-min-ttl: 600\n" in unbound


def _check(path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", "check", "--lab", str(path)], capture_output=True,
                          text=True, cwd=REPO, timeout=60)


@pytest.mark.parametrize(("table", "key"), [("check", "misc_path"), ("vrrp", "state"), ("stack", "image")])
def test_a_preset_with_an_unknown_key_gets_one_line(tmp_path, table, key):
    text = SEED.read_text().replace(f"\n[{table}]", f"\n[{table}]\n{key} = 1", 1)
    assert tomllib.loads(text)[table][key] == 1
    bad = tmp_path / "seed.toml"
    bad.write_text(text)
    proc = _check(bad)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"dnslab: error: {bad}: [{table}] {key}: unknown key; known keys: ")


def test_the_preset_itself_checks_clean():
    proc = _check(SEED)
    assert proc.returncode == 0, proc.stderr
    assert "2 resolvers, VIP 192.168.100.100" in proc.stdout
