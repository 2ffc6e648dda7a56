"""The settings the seed's own stack needs beyond the lab's network and checks: the stack runtime
([stack]), a VRRP instance holding the VIP ([vrrp]), Unbound tuning ([unbound]) and the MISC_CHECK
command template ([check] misc_command).

Pure: each parser takes a table reader of lab.model.parse (duck-typed: `check_keys`, `get`, `choice`,
`positive`, `error`, `data`) and returns a frozen dataclass or raises its one-line LabError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

RUNTIMES = ("systemd", "compose")
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
CLIENT_DNS = ("vip", "docker")
# [load] nameservers: Docker's embedded DNS server in the client container (compose), which forwards
# to the container's `dns:` servers (the VIP).
DOCKER_DNS_NAME = "docker"
DOCKER_DNS = "127.0.0.11"
# What each guest release's docker.io is, and the ipvlan modes its driver takes (l3s came with Docker 23).
DOCKER_VERSIONS = {"bookworm": "docker.io 20.10", "trixie": "docker.io 26.1"}
DOCKER_IPVLAN_MODES = {"bookworm": ("l2", "l3"), "trixie": ("l2", "l3", "l3s")}
# [stack] keys only the compose runtime reads: present with runtime "systemd" they are an error.
COMPOSE_ONLY = ("restart", "client_dns")

# The MISC_CHECK command runs as root in Keepalived: a template of plain words and two placeholders.
MISC_PLACEHOLDERS = ("{rs}", "{name}")
MISC_PROGRAM_RE = re.compile(r"/(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*")
MISC_WORD_RE = re.compile(r"[A-Za-z0-9_.,:=+@/-]+")
# A name in the lab's zone (the resolvers serve lab.test. only and never recurse).
LAB_ZONE = "lab.test"
LAB_NAME_RE = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*lab\.test")


@dataclass(frozen=True)
class Stack:
    """How the stack runs: systemd units in namespaces (today) or a Docker compose project."""

    runtime: str = "systemd"
    restart: str = "no"         # compose: the resolvers' restart policy
    client_dns: str = "vip"     # compose: the client asks the VIP, or Docker's embedded DNS (127.0.0.11)


@dataclass(frozen=True)
class Vrrp:
    """A VRRP instance that holds the VIP on the director's link. One director: it is MASTER."""

    enabled: bool = False
    virtual_router_id: int = 51
    priority: int = 150
    advert_int: int = 1


@dataclass(frozen=True)
class Unbound:
    """Unbound settings every resolver gets."""

    num_threads: int = 1
    cache_min_ttl: int = 0
    cache_max_ttl: int = 86400


def parse_stack(r: Any) -> Stack:
    """[stack]: the runtime, and the compose-only keys only with runtime "compose"."""
    r.check_keys(tuple(Stack.__dataclass_fields__))
    stack = Stack(
        runtime=r.choice("runtime", RUNTIMES, Stack.runtime),
        restart=r.choice("restart", RESTART_POLICIES, Stack.restart),
        client_dns=r.choice("client_dns", CLIENT_DNS, Stack.client_dns),
    )
    if stack.runtime == "systemd":
        for key in COMPOSE_ONLY:
            if key in r.data:
                r.error(key, "only the compose runtime reads it; remove it or set "
                             '[stack] runtime = "compose"')
    return stack


def check_runtime(stack: Stack, check: Any, network: Any, release: str, error: Any) -> None:
    """Settings only the systemd runtime can honour, refused under compose: `error(table, key, why)`."""
    if stack.runtime != "compose":
        return
    if network.ipvlan_mode not in DOCKER_IPVLAN_MODES.get(release, ("l2", "l3", "l3s")):
        modes = " or ".join(f'"{m}"' for m in DOCKER_IPVLAN_MODES[release])
        error("network", "ipvlan_mode", f'"{network.ipvlan_mode}" is not a mode of {release}\'s Docker '
                                        f"ipvlan driver ({DOCKER_VERSIONS[release]}); set {modes}, or "
                                        '[stack] runtime = "systemd"')
    if not network.vlan:
        error("network", "vlan", "the compose runtime's dnsnet sits on the VLAN link (Docker's ipvlan driver "
                                 'makes it); set it to true or [stack] runtime = "systemd"')
    if network.keepalived_netns != "root":
        error("network", "keepalived_netns", 'the compose runtime runs Keepalived on the host network; '
                                             'set it to "root" or [stack] runtime = "systemd"')


def parse_vrrp(r: Any) -> Vrrp:
    """[vrrp]: router id and priority 1-255, advert_int whole seconds (VRRP version 2)."""
    r.check_keys(tuple(Vrrp.__dataclass_fields__))
    vrrp = Vrrp(
        enabled=r.get("enabled", bool, Vrrp.enabled),
        virtual_router_id=r.get("virtual_router_id", int, Vrrp.virtual_router_id),
        priority=r.get("priority", int, Vrrp.priority),
        advert_int=r.get("advert_int", int, Vrrp.advert_int),
    )
    for key in ("virtual_router_id", "priority"):
        if not 1 <= getattr(vrrp, key) <= 255:
            r.error(key, f"must be between 1 and 255, got {getattr(vrrp, key)}")
    if not 1 <= vrrp.advert_int <= 255:
        r.error("advert_int", f"whole seconds between 1 and 255 (VRRP version 2), got {vrrp.advert_int}")
    return vrrp


def parse_unbound(r: Any) -> Unbound:
    """[unbound]: threads 1-64, cache TTL bounds in seconds, min <= max."""
    r.check_keys(tuple(Unbound.__dataclass_fields__))
    unbound = Unbound(
        num_threads=r.positive("num_threads", int, Unbound.num_threads),
        cache_min_ttl=r.positive("cache_min_ttl", int, Unbound.cache_min_ttl, zero=True),
        cache_max_ttl=r.positive("cache_max_ttl", int, Unbound.cache_max_ttl),
    )
    if unbound.num_threads > 64:
        r.error("num_threads", f"must be at most 64, got {unbound.num_threads}")
    if unbound.cache_min_ttl > unbound.cache_max_ttl:
        r.error("cache_min_ttl", f"{unbound.cache_min_ttl} is above cache_max_ttl {unbound.cache_max_ttl}")
    return unbound


def misc_template_problem(template: str) -> str | None:
    """Why `template` cannot be a MISC_CHECK command, or None. It is an absolute program path and
    words of A-Z a-z 0-9 _ . , : = + @ / - , or exactly `{rs}` (the real server's address) or
    `{name}` (the [check] misc_name); it names `{rs}`. No quotes, no shell syntax, no other braces."""
    words = template.split(" ")
    if not template or any(not w for w in words):
        return "words separated by single spaces, e.g. \"/usr/bin/nslookup -type=a {name} {rs}\""
    if not MISC_PROGRAM_RE.fullmatch(words[0]) or ".." in words[0].split("/"):
        return f"{words[0]!r} is not an absolute program path such as /usr/bin/nslookup"
    for word in words[1:]:
        if word not in MISC_PLACEHOLDERS and not MISC_WORD_RE.fullmatch(word):
            return (f"{word!r} is neither {{rs}}, {{name}} nor a word of A-Z a-z 0-9 _ . , : = + @ / - "
                    "(the command runs as root: no quotes, spaces or shell syntax)")
    if "{rs}" not in words:
        return "it must name {rs}, the real server it checks"
    return None


def lab_name_problem(name: str) -> str | None:
    """Why `name` cannot be the checked name, or None: it must be lab.test or a name under it."""
    if not LAB_NAME_RE.fullmatch(name) or len(name) > 253:
        return (f"{name!r} is not a name in the lab's zone {LAB_ZONE}: the lab has no internet and "
                "its resolvers refuse every other name (e.g. www.lab.test)")
    return None


def expand_misc(template: str, rs: str, name: str) -> str:
    """The MISC_CHECK command for one real server: the placeholders replaced word by word."""
    values = {"{rs}": rs, "{name}": name}
    return " ".join(values.get(word, word) for word in template.split(" "))
