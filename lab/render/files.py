"""Rendering: pure functions from the lab model to the text of every file deploy installs."""

from __future__ import annotations

import hashlib
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from lab.model import layout
from lab.model.config import REPO_ROOT, Lab, Resolver
from lab.model.layout import (
    EXIT_DIR,
    EXIT_WATCHER,
    KEEPALIVED_CONF,
    KEEPALIVED_UNIT,
    LB_NS,
    LOADTEST_DIR,
    LVS_NOTIFY_FIFO,
    NETWORK_SCRIPT,
    RESOLVER_DROPIN,
    RESOLVER_UNIT,
    SYSCTL_CONF,
    exit_file,
    unbound_path,
)
from lab.model.removal import DRAIN_S, track_file_name
from lab.model.stackconf import expand_misc
from lab.render.netplan import Step, link_name, network_plan, topology_signature

DOCKER_CPU_WEIGHT = 1  # systemd's lowest: Docker's daemons run on what the data path leaves

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("lab.render", "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_ENV.filters["shquote"] = shlex.quote
_ENV.globals["layout"] = layout


def one_line(text: str) -> str:
    """`text` for a comment line: backslashes, newlines and other control or non-ASCII characters escaped."""
    return text.encode("unicode_escape").decode("ascii")


_ENV.filters["oneline"] = one_line



@dataclass(frozen=True)
class GuestFile:
    """A file deploy installs in the guest: its bytes and permission bits."""

    content: bytes
    mode: int = 0o644

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def render_unbound(
    lab: Lab,
    resolver: Resolver,
    *,
    port: int = 53,
    threads: int | None = None,
    username: str = "unbound",
    extra_allow: Sequence[str] = (),
) -> str:
    """unbound.conf for one resolver: its own address only, the lab zone only, never recursing."""
    return _ENV.get_template("unbound.conf.j2").render(
        name=resolver.name,
        address=str(resolver.address),
        port=port,
        threads=lab.unbound.num_threads if threads is None else threads,
        cache_min_ttl=lab.unbound.cache_min_ttl,
        cache_max_ttl=lab.unbound.cache_max_ttl,
        username=username,
        allow=[str(lab.network.subnet), *extra_allow],
        source=lab.source,
    )


def _netns_label(lab: Lab) -> str:
    return lab.network.director_netns or "root"


def misc_command(lab: Lab, resolver: Resolver, protocol: str) -> str:
    """The MISC_CHECK command: [check] misc_command with its placeholders filled in, else the seed's
    nslookup or dig bounded by connect_timeout."""
    check = lab.check
    if check.misc_command:
        return expand_misc(check.misc_command, str(resolver.address), check.misc_name)
    tcp = protocol == "TCP"
    if check.misc_tool == "dig":
        probe = (f"/usr/bin/dig +time=1 +tries=1 +norecurse{' +tcp' if tcp else ''} "
                 f"@{resolver.address} -p 53 who.lab.test TXT")
    else:
        probe = (f"/usr/bin/nslookup -timeout=1 -retry=0{' -vc' if tcp else ''} "
                 f"-type=TXT who.lab.test {resolver.address}")
    return f"/usr/bin/timeout {check.connect_timeout:g} {probe}"


def vip_link(lab: Lab) -> str:
    """Where a VRRP instance holds the VIP: the director's link, or under compose (Keepalived on the
    host network, as in the seed) the VLAN link."""
    return lab.network.lower_link if lab.stack.runtime == "compose" else link_name(LB_NS)


def render_keepalived(lab: Lab) -> str:
    """keepalived.conf: one NAT virtual server per protocol on VIP:53, every resolver checked."""
    virtual_servers = [
        {"protocol": proto.upper(), "ops": lab.ipvs.ops and proto == "udp"}
        for proto in lab.ipvs.protocols
    ]
    return _ENV.get_template("keepalived.conf.j2").render(
        source=lab.source,
        netns_label=_netns_label(lab),
        vip=str(lab.network.vip),
        virtual_servers=virtual_servers,
        lb_algo=lab.ipvs.lb_algo,
        check=lab.check,
        resolvers=lab.resolvers,
        misc_command=lambda rs, proto: misc_command(lab, rs, proto),
        misc_timeout=lab.check.misc_timeout or math.ceil(lab.check.connect_timeout) + 1,
        # Under compose nothing but Keepalived manages the host's IPVS: it sets the timeouts.
        lvs_timeouts=lab.ipvs if lab.ipvs.lvs_timeouts or lab.stack.runtime == "compose" else None,
        vrrp=lab.vrrp if lab.vrrp.enabled else None,
        vrrp_link=vip_link(lab),
        notify_fifo=LVS_NOTIFY_FIFO,
        track_file=lambda rs: track_file_name(rs.name),
        exit_file=lambda rs: exit_file(rs.name),
    )


def render_resolver_unit(lab: Lab) -> str:
    """The systemd template unit `dnslab-resolver@NAME` (Unbound inside /run/netns/NAME)."""
    return _ENV.get_template("dnslab-resolver@.service.j2").render(source=lab.source)


def render_resolver_dropin(lab: Lab) -> str:
    """The resolver units' drop-in for removal on exit (a comment only when it is off, so turning it
    off replaces the file deploy installed)."""
    return _ENV.get_template("removal-on-exit.conf.j2").render(
        source=lab.source, enabled=lab.check.removal_on_exit, exit_dir=EXIT_DIR, drain_s=DRAIN_S,
        watcher=EXIT_WATCHER)


def exit_watcher(root: Path = REPO_ROOT) -> GuestFile:
    """The exit watcher the drop-in starts (lab/guest/dnslab-exit-watch.py)."""
    return GuestFile((root / "lab" / "guest" / "dnslab-exit-watch.py").read_bytes(), 0o755)


def render_keepalived_unit(lab: Lab) -> str:
    """The systemd unit `dnslab-keepalived` (in the director's namespace)."""
    return _ENV.get_template("dnslab-keepalived.service.j2").render(
        source=lab.source,
        vip=str(lab.network.vip),
        netns=lab.network.director_netns,
        netns_label=_netns_label(lab),
        vrrp=lab.vrrp.enabled,
        exit_dir=EXIT_DIR,
        notify_fifo=LVS_NOTIFY_FIFO,
    )


def render_docker_cpu_dropin(lab: Lab) -> str:
    """The compose runtime's drop-in for Docker's daemons: the data path before Docker's control plane."""
    return _ENV.get_template("docker-cpu.conf.j2").render(source=lab.source, weight=DOCKER_CPU_WEIGHT)


def render_sysctl(lab: Lab) -> str:
    """The director's sysctls as a sysctl.d file."""
    return _ENV.get_template("sysctl.conf.j2").render(
        source=lab.source, netns_label=_netns_label(lab), sysctl=lab.sysctl
    )


def render_script(lab: Lab, steps: Sequence[Step], *, title: str, script: str,
                  topology: str = "", preamble: str = "") -> str:
    """A bash script running `steps` (up / down / check), printing `@@ STATUS NAME` per step.
    `preamble` is shell run first, defining helpers the steps' commands use."""
    return _ENV.get_template("steps.sh.j2").render(
        source=lab.source, title=title, script=script, topology=topology, steps=steps,
        preamble=preamble,
    )


def render_network_script(lab: Lab) -> str:
    """The network plan as the readable, runnable script deploy installs."""
    return render_script(
        lab,
        network_plan(lab),
        title="dnslab network plan: VLAN/dummy parent, ipvlan, namespaces, VIP, SNAT, tuning.",
        script=NETWORK_SCRIPT,
        topology=topology_signature(lab),
    )


def loadtest_files(root: Path = REPO_ROOT) -> dict[str, GuestFile]:
    """The repo's load generator (`loadtest/*.py`), installed for the client namespace."""
    return {
        f"{LOADTEST_DIR}/{path.name}": GuestFile(path.read_bytes())
        for path in sorted((root / "loadtest").glob("*.py"))
    }


def render_files(lab: Lab, root: Path = REPO_ROOT) -> dict[str, GuestFile]:
    """Every file deploy installs, keyed by its absolute path in the guest."""
    files = {
        unbound_path(r.name): GuestFile(render_unbound(lab, r).encode()) for r in lab.resolvers
    }
    files[KEEPALIVED_CONF] = GuestFile(render_keepalived(lab).encode())
    files[RESOLVER_UNIT] = GuestFile(render_resolver_unit(lab).encode())
    files[RESOLVER_DROPIN] = GuestFile(render_resolver_dropin(lab).encode())
    files[EXIT_WATCHER] = exit_watcher(root)
    files[KEEPALIVED_UNIT] = GuestFile(render_keepalived_unit(lab).encode())
    files[SYSCTL_CONF] = GuestFile(render_sysctl(lab).encode())
    files[NETWORK_SCRIPT] = GuestFile(render_network_script(lab).encode(), 0o755)
    files.update(loadtest_files(root))
    return files
