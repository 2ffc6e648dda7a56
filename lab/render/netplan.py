"""The lab's network plan as ordered plain data: steps with a check, an apply and an undo command.

Pure: `network_plan(lab)` returns the steps that build, inside the guest, the seed's network
(VLAN sub-interface or dummy parent, ipvlan, one namespace per resolver plus `client` and maybe
`lb`, the director's address and the VIP, the SNAT rule) followed by the tuning that experiments
change in place (sysctls and IPVS timeouts in the director's namespace).

Every command is a shell snippet run by bash as root in the guest's root namespace. `check`
exits 0 when the step's state already holds; `apply` makes it hold; `undo` removes it and never
fails when there is nothing to remove.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

from lab.model.config import Lab
from lab.model.layout import (
    CLIENT_NS,
    IPVS_TIMEOUT_ORIG,
    KEEPALIVED,
    LB_NS,
    STATE,
    SYSCTL_ORIG,
    in_ns,
    resolver_unit,
)


@dataclass(frozen=True)
class Step:
    """One idempotent step: `check` exits 0 when done, `apply` does it, `undo` reverts it."""

    name: str
    check: str
    apply: str
    undo: str = ":"


def link_name(ns: str) -> str:
    """The ipvlan slave of a namespace (at most 15 characters: names are at most 12)."""
    return f"dl-{ns}"


def _ip(ns: str | None) -> str:
    return "ip" if ns is None else f"ip -n {ns}"


UP = r"*[\<,]UP[,\>]*"  # bash glob: the UP flag in `ip -o link` output (not LOWER_UP)


def _link_matches(ns: str | None, dev: str, pattern: str) -> str:
    """One `ip` call: the link exists, is up, and its details match the bash glob `pattern`."""
    return f"o=$({_ip(ns)} -d -o link show dev {dev} 2>/dev/null) && [[ $o == {UP} && $o == {pattern} ]]"


def lower_link_step(lab: Lab) -> Step:
    """The link every ipvlan sits on: VLAN `parent.vlan_id` on the parent, or a dummy."""
    net = lab.network
    dev = net.lower_link
    if net.vlan:
        pattern = f"*' vlan protocol 802.1Q id {net.vlan_id} '*"
        create = f"ip link add link {net.parent} name {dev} type vlan id {net.vlan_id}"
        name = f"link {dev}: VLAN {net.vlan_id} on {net.parent}"
    else:
        pattern = "*' dummy '*"
        create = f"ip link add {dev} type dummy"
        name = f"link {dev}: dummy parent (no VLAN)"
    return Step(
        name=name,
        check=_link_matches(None, dev, pattern),
        apply=f"ip link del dev {dev} 2>/dev/null; {create} && ip link set dev {dev} up",
        undo=f"ip link del dev {dev} 2>/dev/null || true",
    )


def namespaces(lab: Lab) -> list[str]:
    """Every namespace the plan creates, in creation order."""
    extra = [LB_NS] if lab.network.director_netns else []
    return [r.name for r in lab.resolvers] + [CLIENT_NS] + extra


def _unit_in(lab: Lab, ns: str) -> str | None:
    if ns == LB_NS:
        return KEEPALIVED
    if ns == CLIENT_NS:
        return None
    return resolver_unit(ns)


def namespace_step(lab: Lab, ns: str) -> Step:
    """A named network namespace with its loopback up. Undo stops what runs in it first."""
    unit = _unit_in(lab, ns)
    stop = f"systemctl stop {unit} 2>/dev/null; " if unit else ""
    return Step(
        name=f"netns {ns}",
        check=f"[ -e /run/netns/{ns} ] && {_link_matches(ns, 'lo', '*')}",
        apply=f"{{ [ -e /run/netns/{ns} ] || ip netns add {ns}; }} && ip -n {ns} link set dev lo up",
        undo=(f"{stop}[ ! -e /run/netns/{ns} ] || {{ ip netns pids {ns} | xargs -r kill -9; "
              f"ip netns del {ns}; }}"),
    )


def ipvlan_step(lab: Lab, ns: str | None, owner: str) -> Step:
    """An ipvlan slave of the lower link in the configured mode, moved into `ns`, up."""
    net = lab.network
    dev = link_name(owner)
    where = ns or "root"
    move = f" && ip link set dev {dev} netns {ns}" if ns else ""
    return Step(
        name=f"ipvlan {dev} ({net.ipvlan_mode}) in {where}",
        check=_link_matches(ns, dev, f"*' ipvlan  mode {net.ipvlan_mode} '*"),
        apply=(f"{_ip(ns)} link del dev {dev} 2>/dev/null; ip link del dev {dev} 2>/dev/null; "
               f"ip link add {dev} link {net.lower_link} type ipvlan mode {net.ipvlan_mode}{move} "
               f"&& {_ip(ns)} link set dev {dev} up"),
        undo=f"{_ip(ns)} link del dev {dev} 2>/dev/null || true",
    )


def address_step(ns: str | None, owner: str, cidr: str, role: str) -> Step:
    """An IPv4 address on a namespace's ipvlan slave."""
    dev = link_name(owner)
    return Step(
        name=f"address {cidr} ({role}) on {dev}",
        check=f"o=$({_ip(ns)} -o -4 addr show dev {dev} 2>/dev/null) && [[ $o == *' inet {cidr} '* ]]",
        apply=f"{_ip(ns)} addr add {cidr} dev {dev}",
        undo=f"{_ip(ns)} addr del {cidr} dev {dev} 2>/dev/null || true",
    )


def snat_rule(lab: Lab) -> str:
    """The iptables rule (without -A/-C/-D) that sends replies back through IPVS: the director's source
    for queries IPVS NATed to a resolver (net.ipv4.vs.conntrack=1 lets iptables see them)."""
    net = lab.network
    return (f"POSTROUTING -m ipvs --vaddr {net.vip}/32 --vport 53 "
            f"-j SNAT --to-source {net.director}")


def snat_step(lab: Lab) -> Step:
    ns = lab.network.director_netns
    ipt = in_ns(ns, "iptables -t nat")
    rule = snat_rule(lab)
    return Step(
        name=f"SNAT for IPVS traffic to {lab.network.vip}:53 via {lab.network.director}",
        check=f"{ipt} -C {rule} 2>/dev/null",
        apply=f"{ipt} -A {rule}",
        undo=f"while {ipt} -D {rule} 2>/dev/null; do :; done",
    )


def sysctl_step(lab: Lab, key: str, value: str) -> Step:
    """One sysctl in the director's namespace; in the root namespace the boot value is kept.
    `key` and `value` are validated by lab.model.parse and quoted here as well: this runs as root."""
    ns = lab.network.director_netns
    proc = shlex.quote("/proc/sys/" + key.replace(".", "/"))
    read = f"read -r -a v < {proc}" if ns is None else f"v=($({in_ns(ns, f'cat {proc}')}))"
    want = " ".join(value.split())
    save = ""
    undo = ":"
    if ns is None:
        save = (f"mkdir -p {STATE}; grep -q '^{key}=' {SYSCTL_ORIG} 2>/dev/null "
                f"|| echo \"{key}=$(sysctl -n {key})\" >> {SYSCTL_ORIG}; ")
        undo = (f"v=$(sed -n 's/^{key}=//p' {SYSCTL_ORIG} 2>/dev/null); "
                f"[ -z \"$v\" ] || sysctl -qw \"{key}=$v\"")
    return Step(
        name=f"sysctl {key} = {want} ({ns or 'root'})",
        check=f"{read} && [ \"${{v[*]}}\" = {shlex.quote(want)} ]",
        apply=f"{save}{in_ns(ns, 'sysctl -qw')} {shlex.quote(f'{key}={want}')}",
        undo=undo,
    )


def ipvs_timeout_step(lab: Lab) -> Step:
    """`ipvsadm --set TCP TCPFIN UDP` in the director's namespace."""
    ns = lab.network.director_netns
    ipvs = lab.ipvs
    values = f"{ipvs.tcp_timeout} {ipvs.tcpfin_timeout} {ipvs.udp_timeout}"
    show = in_ns(ns, "ipvsadm -L --timeout")
    save = ""
    undo = ":"
    if ns is None:
        save = (f"mkdir -p {STATE}; [ -s {IPVS_TIMEOUT_ORIG} ] || {show} "
                f"| sed -n 's/.*: //p' > {IPVS_TIMEOUT_ORIG}; ")
        undo = f"[ ! -s {IPVS_TIMEOUT_ORIG} ] || ipvsadm --set $(cat {IPVS_TIMEOUT_ORIG})"
    return Step(
        name=f"IPVS timeouts tcp/tcpfin/udp = {values.replace(' ', '/')} s ({ns or 'root'})",
        check=f"o=$({show}) && [[ $o == *': {values}' ]]",
        apply=f"{save}{in_ns(ns, 'ipvsadm --set')} {values}",
        undo=undo,
    )


def topology_steps(lab: Lab) -> list[Step]:
    """Links, namespaces, slaves, addresses and the SNAT rule, in build order."""
    net = lab.network
    prefix = net.subnet.prefixlen
    steps = [lower_link_step(lab)]
    steps += [namespace_step(lab, ns) for ns in namespaces(lab)]
    for r in lab.resolvers:
        steps.append(ipvlan_step(lab, r.name, r.name))
        steps.append(address_step(r.name, r.name, f"{r.address}/{prefix}", f"resolver {r.name}"))
    steps.append(ipvlan_step(lab, CLIENT_NS, CLIENT_NS))
    steps.append(address_step(CLIENT_NS, CLIENT_NS, f"{net.client}/{prefix}", "client"))
    director_ns = net.director_netns
    steps.append(ipvlan_step(lab, director_ns, LB_NS))
    steps.append(address_step(director_ns, LB_NS, f"{net.director}/{prefix}", "director"))
    steps.append(address_step(director_ns, LB_NS, f"{net.vip}/32", "VIP"))
    steps.append(snat_step(lab))
    return steps


def tuning_steps(lab: Lab) -> list[Step]:
    """Settings experiments change in place: sysctls and IPVS timeouts (director namespace)."""
    return [sysctl_step(lab, key, value) for key, value in lab.sysctl] + [ipvs_timeout_step(lab)]


def network_plan(lab: Lab) -> list[Step]:
    """The whole ordered network plan: topology, then tuning."""
    return topology_steps(lab) + tuning_steps(lab)


def topology_signature(lab: Lab) -> str:
    """A short hash of the topology steps: when it changes, the network is rebuilt."""
    text = "\n".join(f"{s.name}\0{s.check}\0{s.apply}\0{s.undo}" for s in topology_steps(lab))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
