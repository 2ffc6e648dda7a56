"""Reading lab.toml: the raw TOML tables checked key by key into the model of lab/model/config.py.

Pure apart from `load_lab` reading the file: `parse_lab` takes plain data and returns a `Lab` or
raises `ConfigError` with a one-line message naming the file, the key and what is wrong.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from lab.model.config import (
    ACCELS,
    CHECK_TYPES,
    DEFAULT_LAB,
    ID_RE,
    IPVLAN_MODES,
    KEEPALIVED_NETNS,
    LB_ALGOS,
    MISC_TOOLS,
    NAME_RE,
    PROTOCOLS,
    PROVIDERS,
    RELEASES,
    SYSCTL_RE,
    SYSCTL_VALUE_RE,
    VM,
    Check,
    Ipvs,
    Lab,
    Load,
    Network,
    Resolver,
    SSHHost,
)
from lab.model.errors import ConfigError
from lab.model.kinds import wrong_kind
from lab.model.labfile import merge, read_tables
from lab.model.stackconf import (
    DOCKER_DNS_NAME,
    Stack,
    check_runtime,
    lab_name_problem,
    misc_template_problem,
    parse_stack,
    parse_unbound,
    parse_vrrp,
)
from loadtest.knobs import LAB_KNOBS, KnobError, check_combination


class _Reader:
    """Typed access to one TOML table, reporting errors as `file: [table] key: problem`."""

    def __init__(self, source: str, table: str, data: Any) -> None:
        self.source, self.table = source, table
        if not isinstance(data, dict):
            self.error("", f"must be a table, got {type(data).__name__}")
        self.data: dict[str, Any] = data

    def error(self, key: str, problem: str) -> None:
        where = f"[{self.table}] {key}".strip() if self.table else key
        raise ConfigError(f"{self.source}: {where}: {problem}")

    def check_keys(self, known: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in known:
                self.error(key, f"unknown key; known keys: {', '.join(known)}")

    def get(self, key: str, kind: type, default: Any) -> Any:
        value = self.data.get(key, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is not bool and isinstance(value, bool) or not isinstance(value, kind):
            self.error(key, wrong_kind(key, kind, value))
        if kind is float and not math.isfinite(value):
            self.error(key, f"must be a finite number, got {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            self.error(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def positive(self, key: str, kind: type, default: Any, *, zero: bool = False) -> Any:
        value = self.get(key, kind, default)
        if value < 0 or (value == 0 and not zero):
            self.error(key, f"must be {'>= 0' if zero else '> 0'}, got {value!r}")
        return value

    def share(self, key: str, default: float) -> float:
        value = self.get(key, float, default)
        if not 0.0 <= value <= 1.0:
            self.error(key, f"must be between 0 and 1, got {value!r}")
        return value

    def address(self, key: str, default: IPv4Address, subnet: IPv4Network) -> IPv4Address:
        text = self.get(key, str, str(default))
        try:
            addr = IPv4Address(text)
        except ValueError:
            self.error(key, f"not an IPv4 address: {text!r}")
        if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
            self.error(key, f"{addr} is not a host address inside subnet {subnet}")
        return addr


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(cls.__dataclass_fields__)


def parse_lab(raw: Mapping[str, Any], source: str = "lab.toml") -> Lab:
    """Validate plain data (as read from lab.toml) into a `Lab`."""
    top = _Reader(source, "", dict(raw))
    top.check_keys(("vm", "ssh", "network", "resolvers", "check", "ipvs", "sysctl", "load", "vrrp",
                    "unbound", "stack"))

    v = _Reader(source, "vm", raw.get("vm", {}))
    v.check_keys(_fields(VM))
    vm = VM(
        provider=v.choice("provider", PROVIDERS, VM.provider),
        cpus=v.positive("cpus", int, VM.cpus),
        memory_mib=v.positive("memory_mib", int, VM.memory_mib),
        accel=v.choice("accel", ACCELS, VM.accel),
        boot_timeout_s=v.positive("boot_timeout_s", int, VM.boot_timeout_s),
        release=v.choice("release", RELEASES, VM.release),
    )
    if vm.memory_mib < 512:
        v.error("memory_mib", f"must be at least 512, got {vm.memory_mib}")

    s = _Reader(source, "ssh", raw.get("ssh", {}))
    s.check_keys(_fields(SSHHost))
    ssh = SSHHost(
        host=s.get("host", str, ""),
        port=s.positive("port", int, 22),
        user=s.get("user", str, "root"),
        key=s.get("key", str, ""),
    )
    if vm.provider == "ssh" and not ssh.host:
        s.error("host", 'required when [vm] provider = "ssh": name the host to build the lab on')

    network = _parse_network(_Reader(source, "network", raw.get("network", {})))
    resolvers = _parse_resolvers(source, raw.get("resolvers"), network)

    c = _Reader(source, "check", raw.get("check", {}))
    c.check_keys(_fields(Check))
    check = Check(
        type=c.choice("type", CHECK_TYPES, Check.type),
        misc_tool=c.choice("misc_tool", MISC_TOOLS, Check.misc_tool),
        delay_loop=c.positive("delay_loop", float, Check.delay_loop),
        retry=c.positive("retry", int, Check.retry, zero=True),
        delay_before_retry=c.positive("delay_before_retry", float, Check.delay_before_retry),
        connect_timeout=c.positive("connect_timeout", float, Check.connect_timeout),
        inhibit_on_failure=c.get("inhibit_on_failure", bool, False),
        removal_on_exit=c.get("removal_on_exit", bool, False),
        quorum=c.get("quorum", int, Check.quorum),
        misc_command=c.get("misc_command", str, Check.misc_command),
        misc_name=c.get("misc_name", str, Check.misc_name),
        misc_timeout=c.positive("misc_timeout", int, Check.misc_timeout, zero=True),
    )
    if check.misc_command and (problem := misc_template_problem(check.misc_command)):
        c.error("misc_command", problem)
    if problem := lab_name_problem(check.misc_name):
        c.error("misc_name", problem)
    if check.quorum < 1:
        c.error("quorum", f"Keepalived accepts 1 or more, got {check.quorum} (it rejects quorum 0 and "
                          "runs with 1); without a sorry_server quorum only drives notifications: use 1")

    i = _Reader(source, "ipvs", raw.get("ipvs", {}))
    i.check_keys(_fields(Ipvs))
    protocols = i.get("protocols", list, list(Ipvs.protocols))
    if not protocols or any(p not in PROTOCOLS for p in protocols) or len(set(protocols)) != len(
        protocols
    ):
        i.error("protocols", f"must be a non-empty list of distinct udp/tcp, got {protocols!r}")
    ipvs = Ipvs(
        lb_algo=i.choice("lb_algo", LB_ALGOS, Ipvs.lb_algo),
        ops=i.get("ops", bool, False),
        protocols=tuple(protocols),
        udp_timeout=i.positive("udp_timeout", int, Ipvs.udp_timeout),
        tcp_timeout=i.positive("tcp_timeout", int, Ipvs.tcp_timeout),
        tcpfin_timeout=i.positive("tcpfin_timeout", int, Ipvs.tcpfin_timeout),
        lvs_timeouts=i.get("lvs_timeouts", bool, False),
    )

    sysctl = _parse_sysctl(_Reader(source, "sysctl", raw.get("sysctl", {})))

    stack = parse_stack(_Reader(source, "stack", raw.get("stack", {})))
    load = _parse_load(_Reader(source, "load", raw.get("load", {})), network, resolvers, stack)
    vrrp = parse_vrrp(_Reader(source, "vrrp", raw.get("vrrp", {})))
    unbound = parse_unbound(_Reader(source, "unbound", raw.get("unbound", {})))

    def runtime_error(table: str, key: str, problem: str) -> None:
        _Reader(source, table, {}).error(key, problem)

    check_runtime(stack, check, network, vm.release, runtime_error)
    return Lab(source, vm, ssh, network, resolvers, check, ipvs, sysctl, load, vrrp=vrrp, unbound=unbound,
               stack=stack, raw=dict(raw))


def _parse_load(ld: _Reader, network: Network, resolvers: tuple[Resolver, ...], stack: Stack) -> Any:
    """[load]: each key by its knob (loadtest/knobs.py), then the keys that must go together, then the
    nameservers against this lab."""
    ld.check_keys(_fields(Load))
    values = {}
    for knob in LAB_KNOBS:
        try:
            values[knob.key] = knob.parse(ld.data.get(knob.key, knob.table_default))
        except KnobError as err:
            ld.error(knob.key, str(err))
    problem = check_combination(values)
    if problem:
        ld.error(*problem)
    if not values["nameservers"]:
        ld.error("nameservers", 'must not be empty; give e.g. ["vip"]')
    names = {"vip"} | {r.name for r in resolvers}
    for item in values["nameservers"]:
        if item == DOCKER_DNS_NAME and stack.runtime != "compose":
            ld.error("nameservers", f'"{DOCKER_DNS_NAME}" (Docker\'s embedded DNS server) needs '
                                    '[stack] runtime = "compose"; use "vip" or a resolver name')
        if item in names or item == DOCKER_DNS_NAME:
            continue
        try:
            addr = IPv4Address(item)
        except ValueError:
            known = ", ".join(sorted(names - {"vip"}))
            ld.error("nameservers", f"{item!r} is not vip, {DOCKER_DNS_NAME} (compose), a resolver name "
                                    f"({known}) or an IPv4 address")
        if addr not in network.subnet:
            ld.error("nameservers", f"{addr} is outside [network] subnet {network.subnet}: the load must "
                                    "stay inside the lab")
    return Load(**values)


def _parse_network(n: _Reader) -> Network:
    n.check_keys(_fields(Network))
    subnet_text = n.get("subnet", str, str(Network.subnet))
    try:
        subnet = IPv4Network(subnet_text, strict=True)
    except ValueError as err:
        n.error("subnet", f"not an IPv4 network ({err}); write it like 192.168.100.0/24")
    if subnet.prefixlen > 29:
        n.error("subnet", f"/{subnet.prefixlen} is too small; use /29 or larger")
    if not subnet.is_private:
        n.error("subnet", f"{subnet} is not a private range; the lab must stay private")
    vlan_id = n.get("vlan_id", int, Network.vlan_id)
    if not 1 <= vlan_id <= 4094:
        n.error("vlan_id", f"must be between 1 and 4094, got {vlan_id}")
    parent = n.get("parent", str, Network.parent)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,10}", parent):
        n.error("parent", f"not an interface name: {parent!r}")
    net = Network(
        parent=parent,
        vlan=n.get("vlan", bool, Network.vlan),
        vlan_id=vlan_id,
        ipvlan_mode=n.choice("ipvlan_mode", IPVLAN_MODES, Network.ipvlan_mode),
        subnet=subnet,
        vip=n.address("vip", Network.vip, subnet),
        director=n.address("director", Network.director, subnet),
        client=n.address("client", Network.client, subnet),
        keepalived_netns=n.choice("keepalived_netns", KEEPALIVED_NETNS, "root"),
    )
    seen: dict[IPv4Address, str] = {}
    for key in ("vip", "director", "client"):
        addr = getattr(net, key)
        if addr in seen:
            n.error(key, f"{addr} is already used by {seen[addr]}")
        seen[addr] = key
    return net


def _parse_resolvers(source: str, data: Any, network: Network) -> tuple[Resolver, ...]:
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{source}: [[resolvers]]: at least one resolver is required")
    taken = {network.vip: "[network] vip", network.director: "[network] director",
             network.client: "[network] client"}
    names: set[str] = set()
    out = []
    for index, item in enumerate(data):
        r = _Reader(source, f"resolvers.{index}", item)
        r.check_keys(("name", "address"))
        if "name" not in item or "address" not in item:
            r.error("", "needs both name and address")
        name = r.get("name", str, "")
        if not NAME_RE.fullmatch(name) or name in ("lb", "client"):
            r.error("name", f"{name!r} must be 1-12 of a-z, 0-9, '-', start with a letter, "
                            "and not be 'lb' or 'client'")
        if name in names:
            r.error("name", f"duplicate resolver name {name!r}")
        addr = r.address("address", network.vip, network.subnet)
        if addr in taken:
            r.error("address", f"{addr} is already used by {taken[addr]}")
        names.add(name)
        taken[addr] = f"resolver {name}"
        out.append(Resolver(name=name, address=addr))
    return tuple(out)


def sysctl_value(value: Any) -> str | None:
    """A sysctl value as text: an integer, integers separated by spaces, or one plain word
    ([A-Za-z0-9_.-]); None for anything else (it would reach a shell and a sysctl.d file)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value)
    return text if SYSCTL_VALUE_RE.fullmatch(text) else None


def option_number(option: str, text: Any, *, zero: bool = False) -> float:
    """A command-line option's value as a finite number > 0 (>= 0 with `zero`), else a ConfigError."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"{option}: not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise ConfigError(f"{option}: must be a finite number {'>= 0' if zero else '> 0'}, got {text!r}")
    return value


def check_id(value: Any, what: str) -> str:
    """An experiment name or run id: 1-128 of A-Z a-z 0-9 _ . - (not starting with . or -), else
    ConfigError."""
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise ConfigError(f"{what} {value!r}: use only letters, digits, '_', '.' and '-' "
                          "(at most 128, not starting with '.' or '-')")
    return value


def _parse_sysctl(s: _Reader) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in s.data.items():
        if not SYSCTL_RE.fullmatch(key):
            s.error(json.dumps(key), "not a net.* sysctl name (quote it: \"net.ipv4.vs.conntrack\" = 1)")
        text = sysctl_value(value)
        if text is None:
            s.error(json.dumps(key), f"value must be an integer, integers separated by spaces, or one word "
                               f"of A-Z a-z 0-9 _ . - ; got {value!r}")
        out.append((key, text))
    return tuple(out)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"sysctl": {"net.ipv4.vs.x": 1}} -> {"sysctl.net.ipv4.vs.x": 1}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def with_overrides(lab: Lab, overrides: Mapping[str, Any], source: str | None = None) -> Lab:
    """The lab with an experiment's overrides applied and validated again."""
    return parse_lab(merge(lab.raw, overrides), source or lab.source)


def lab_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The lab file to use: the argument, else $DNSLAB_LAB, else lab.toml at the repo root."""
    return Path(path or os.environ.get("DNSLAB_LAB") or DEFAULT_LAB)


def load_lab(path: str | os.PathLike[str] | None = None) -> Lab:
    """Read and validate a lab file (and the file it extends, if any)."""
    p = lab_path(path)
    return parse_lab(read_tables(p), str(p))
