"""The network plan: order and content of the steps for each variant."""

from __future__ import annotations

import pytest

from lab.model.parse import parse_lab, with_overrides
from lab.render.netplan import network_plan, topology_signature, topology_steps, tuning_steps


@pytest.fixture
def lab(raw_lab):
    return parse_lab(raw_lab, "lab.toml")


def names(steps) -> list[str]:
    return [s.name for s in steps]


def test_default_plan_order(lab):
    assert names(topology_steps(lab)) == [
        "link eth0.53: VLAN 53 on eth0",
        "netns rs1", "netns rs2", "netns rs3", "netns client",
        "ipvlan dl-rs1 (l3s) in rs1", "address 192.168.100.11/24 (resolver rs1) on dl-rs1",
        "ipvlan dl-rs2 (l3s) in rs2", "address 192.168.100.12/24 (resolver rs2) on dl-rs2",
        "ipvlan dl-rs3 (l3s) in rs3", "address 192.168.100.13/24 (resolver rs3) on dl-rs3",
        "ipvlan dl-client (l3s) in client", "address 192.168.100.200/24 (client) on dl-client",
        "ipvlan dl-lb (l3s) in root", "address 192.168.100.254/24 (director) on dl-lb",
        "address 192.168.100.100/32 (VIP) on dl-lb",
        "SNAT for IPVS traffic to 192.168.100.100:53 via 192.168.100.254",
    ]
    assert names(tuning_steps(lab)) == [
        "sysctl net.ipv4.ip_forward = 1 (root)",
        "sysctl net.ipv4.vs.conntrack = 1 (root)",
        "sysctl net.ipv4.vs.expire_nodest_conn = 1 (root)",
        "sysctl net.ipv4.vs.expire_quiescent_template = 0 (root)",
        "IPVS timeouts tcp/tcpfin/udp = 900/120/300 s (root)",
    ]
    assert network_plan(lab) == topology_steps(lab) + tuning_steps(lab)


def test_vlan_step_commands(lab):
    step = topology_steps(lab)[0]
    assert "ip link add link eth0 name eth0.53 type vlan id 53" in step.apply
    assert "vlan protocol 802.1Q id 53" in step.check
    assert step.undo.startswith("ip link del dev eth0.53")


def test_dummy_parent_when_vlan_is_off(lab):
    steps = topology_steps(with_overrides(lab, {"network": {"vlan": False}}))
    assert steps[0].name == "link dnslab0: dummy parent (no VLAN)"
    assert "ip link add dnslab0 type dummy" in steps[0].apply
    assert all("eth0.53" not in s.apply for s in steps)
    assert "link dnslab0 type ipvlan" in steps[5].apply


@pytest.mark.parametrize("mode", ["l2", "l3", "l3s"])
def test_ipvlan_mode_reaches_every_slave(lab, mode):
    steps = [s for s in topology_steps(with_overrides(lab, {"network": {"ipvlan_mode": mode}}))
             if s.name.startswith("ipvlan")]
    assert len(steps) == 5
    for s in steps:
        assert f"type ipvlan mode {mode}" in s.apply
        assert f"' ipvlan  mode {mode} '" in s.check


def test_lb_variant_puts_the_director_in_its_own_namespace(lab):
    lb = with_overrides(lab, {"network": {"keepalived_netns": "lb"}})
    steps = network_plan(lb)
    assert "netns lb" in names(steps)
    assert names(steps).index("netns lb") < names(steps).index("ipvlan dl-lb (l3s) in lb")
    by_name = {s.name: s for s in steps}
    director = by_name["ipvlan dl-lb (l3s) in lb"]
    assert "ip link set dev dl-lb netns lb" in director.apply
    assert by_name["address 192.168.100.100/32 (VIP) on dl-lb"].apply == \
        "ip -n lb addr add 192.168.100.100/32 dev dl-lb"
    snat = by_name["SNAT for IPVS traffic to 192.168.100.100:53 via 192.168.100.254"]
    assert snat.apply == ("ip netns exec lb iptables -t nat -A POSTROUTING -m ipvs --vaddr "
                          "192.168.100.100/32 --vport 53 -j SNAT --to-source 192.168.100.254")
    assert "systemctl stop dnslab-keepalived.service" in by_name["netns lb"].undo


def test_sysctls_are_set_in_the_director_namespace(lab):
    lb = with_overrides(lab, {"network": {"keepalived_netns": "lb"}})
    for step in tuning_steps(lb):
        assert "ip netns exec lb" in step.apply and "ip netns exec lb" in step.check
        assert step.name.endswith("(lb)") and step.undo == ":"
    for step in tuning_steps(lab):
        assert "ip netns exec" not in step.apply
        assert "/run/dnslab/" in step.apply and "/run/dnslab/" in step.undo


def test_tuning_changes_keep_the_topology(lab):
    tuned = with_overrides(lab, {"sysctl": {"net.ipv4.vs.expire_nodest_conn": 0},
                                 "ipvs": {"udp_timeout": 5, "lb_algo": "wlc"},
                                 "check": {"type": "TCP_CHECK", "delay_loop": 0.2}})
    assert topology_signature(tuned) == topology_signature(lab)
    assert tuning_steps(tuned) != tuning_steps(lab)
    assert "ipvsadm --set 900 120 5" in tuning_steps(tuned)[-1].apply


@pytest.mark.parametrize("change", [{"vlan": False}, {"ipvlan_mode": "l2"},
                                    {"keepalived_netns": "lb"}, {"vip": "192.168.100.99"}])
def test_variant_changes_change_the_topology(lab, change):
    assert topology_signature(with_overrides(lab, {"network": change})) != topology_signature(lab)


def test_namespace_undo_stops_the_resolver_first(lab):
    step = next(s for s in topology_steps(lab) if s.name == "netns rs2")
    assert step.undo.index("systemctl stop dnslab-resolver@rs2.service") < step.undo.index(
        "ip netns del rs2")
