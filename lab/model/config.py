"""The lab description: the typed, immutable model lab.toml is parsed into, and its allowed values.

Pure. lab/model/parse.py builds a `Lab` from lab.toml's tables, checking every key against these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, make_dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from lab.model.errors import ConfigError
from lab.model.stackconf import DOCKER_DNS, DOCKER_DNS_NAME, Stack, Unbound, Vrrp
from loadtest.knobs import LAB_KNOBS

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LAB = REPO_ROOT / "lab.toml"

PROVIDERS = ("qemu", "vagrant", "ssh")
ACCELS = ("auto", "kvm", "tcg")
RELEASES = ("bookworm", "trixie")  # guest Debian releases the image pipeline builds
IPVLAN_MODES = ("l2", "l3", "l3s")
KEEPALIVED_NETNS = ("root", "lb")
CHECK_TYPES = ("DNS_CHECK", "MISC_CHECK", "UDP_CHECK", "TCP_CHECK")
MISC_TOOLS = ("dig", "nslookup")
LB_ALGOS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh")
PROTOCOLS = ("udp", "tcp")
# Patterns are used with `fullmatch` only (`match` with `$` lets a trailing newline through).
NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,11}")
SYSCTL_RE = re.compile(r"net\.[a-z0-9_.]+")
# A sysctl value: integers separated by spaces, or one plain word.
SYSCTL_VALUE_RE = re.compile(r"-?[0-9]+(?:[ \t]+-?[0-9]+)*|[A-Za-z0-9_.-]+")
# Experiment names and run ids: they become file names here and parts of paths in the guest.
ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class VM:
    provider: str = "qemu"
    cpus: int = 2
    memory_mib: int = 2048
    accel: str = "auto"
    boot_timeout_s: int = 300
    release: str = "bookworm"


@dataclass(frozen=True)
class SSHHost:
    host: str = ""
    port: int = 22
    user: str = "root"
    key: str = ""


@dataclass(frozen=True)
class Network:
    parent: str = "eth0"
    vlan: bool = True
    vlan_id: int = 53
    ipvlan_mode: str = "l3s"
    subnet: IPv4Network = IPv4Network("192.168.100.0/24")
    vip: IPv4Address = IPv4Address("192.168.100.100")
    director: IPv4Address = IPv4Address("192.168.100.254")
    client: IPv4Address = IPv4Address("192.168.100.200")
    keepalived_netns: str = "root"

    @property
    def lower_link(self) -> str:
        """The link the ipvlan sits on: `eth0.53`, or a dummy when the VLAN is off."""
        return f"{self.parent}.{self.vlan_id}" if self.vlan else "dnslab0"

    @property
    def vlan_host(self) -> IPv4Address:
        """Compose runtime: the host's own address on the VLAN link (the operator's host network
        config), where a VRRP instance on that link sends from: the subnet's first address, as /32."""
        return self.subnet.network_address + 1

    @property
    def director_netns(self) -> str | None:
        """The namespace holding the VIP and IPVS: None for the root namespace."""
        return None if self.keepalived_netns == "root" else "lb"


@dataclass(frozen=True)
class Resolver:
    name: str
    address: IPv4Address

    @property
    def real_server(self) -> str:
        """`IP:PORT`, spelled as in ipvs.csv."""
        return f"{self.address}:53"


@dataclass(frozen=True)
class Check:
    type: str = "DNS_CHECK"
    misc_tool: str = "dig"
    delay_loop: float = 0.5
    retry: int = 1
    delay_before_retry: float = 0.5
    connect_timeout: float = 0.5
    inhibit_on_failure: bool = False
    removal_on_exit: bool = False  # the resolver's supervisor tells Keepalived at once (track_file)
    quorum: int = 1
    misc_command: str = ""  # MISC_CHECK: a command template with {rs} and {name}; "" = misc_tool's
    misc_name: str = "www.lab.test"  # the name {name} stands for: in the lab zone
    misc_timeout: int = 0  # MISC_CHECK: seconds Keepalived lets it run; 0 = connect_timeout rounded up + 1

    @property
    def removal_bound_s(self) -> float:
        """Worst case from a dead server to its removal: the bound the e2e test asserts."""
        return (
            self.delay_loop
            + self.connect_timeout * (self.retry + 1)
            + self.delay_before_retry * self.retry
        )


@dataclass(frozen=True)
class Ipvs:
    lb_algo: str = "rr"
    ops: bool = False
    protocols: tuple[str, ...] = ("udp", "tcp")
    udp_timeout: int = 300
    tcp_timeout: int = 900
    tcpfin_timeout: int = 120
    lvs_timeouts: bool = False  # Keepalived sets the timeouts too (global_defs lvs_timeouts), as the seed


_PYTYPES = {"float": float, "int": int, "bool": bool, "choice": str, "text": str, "list": tuple}
Load = make_dataclass(
    "Load",
    [(k.key, _PYTYPES[k.kind], field(default=k.table_default)) for k in LAB_KNOBS],
    frozen=True,
)
Load.__doc__ = """The [load] table: one field per lab knob of loadtest/knobs.py (the one table of load
settings). `nameservers` holds names as written: vip, a resolver's name or an address."""


@dataclass(frozen=True)
class Lab:
    source: str
    vm: VM
    ssh: SSHHost
    network: Network
    resolvers: tuple[Resolver, ...]
    check: Check
    ipvs: Ipvs
    sysctl: tuple[tuple[str, str], ...]
    load: Load
    vrrp: Vrrp = Vrrp()
    unbound: Unbound = Unbound()
    stack: Stack = Stack()
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def nameserver_addresses(self) -> tuple[str, ...]:
        """The load client's nameservers as addresses: vip and resolver names resolved."""
        names = {r.name: str(r.address) for r in self.resolvers} | {"vip": str(self.network.vip),
                                                                     DOCKER_DNS_NAME: DOCKER_DNS}
        return tuple(names.get(n, n) for n in self.load.nameservers)

    def resolver(self, name: str) -> Resolver:
        """The resolver called `name`, or a LabError listing the known names."""
        for r in self.resolvers:
            if r.name == name:
                return r
        known = ", ".join(r.name for r in self.resolvers)
        raise ConfigError(f"{self.source}: no resolver named {name!r}; known: {known}")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data, for meta.json."""
        data = asdict(self)
        data.pop("raw")
        return _jsonable(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, IPv4Address | IPv4Network):
        return str(value)
    return value
