"""The compose runtime's files: a `compose.yaml` in the operator's layout plus every file it mounts.

Pure: `compose_files(lab)` returns the project directory's files keyed by their path in the guest.
The layout follows the seed (snemarch/dns-doodle `keepalived/compose.yaml`): an ipvlan network
`dnsnet` on the VLAN link, a bridge network sorted before it, the resolvers at fixed addresses,
Keepalived on the host network after the resolvers and a privileged one-shot init container (the
seed's fix-network.sh as lab/guest/dnslab-compose-init.sh), and a client container on dnsnet.
Images have local names only: no registry is reachable, the lab image will build them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab.model.config import REPO_ROOT, Lab
from lab.model.layout import HOME, LVS_NOTIFY_FIFO
from lab.render.files import GuestFile, render_keepalived, render_sysctl, render_unbound

PROJECT = "dnslab"
COMPOSE_DIR = f"{HOME}/compose"
COMPOSE_FILE = f"{COMPOSE_DIR}/compose.yaml"
INIT_SCRIPT = "dnslab-compose-init.sh"
IMAGES = {
    "unbound": "dnslab/unbound:bookworm",
    "keepalived": "dnslab/keepalived:bookworm",
    "tools": "dnslab/tools:bookworm",  # the init and client containers: iproute2, iptables, dnsutils, python3
}
# Sorted before dnsnet so Docker makes it the default route (the seed's `a_normalnet`). Internal: the
# lab never leaves its VM (the seed's bridge is the resolvers' way to the internet).
BRIDGE = "a_bridge"
DNSNET = "dnsnet"
HOST_LINK = "dnsnet-host"  # the host's ipvlan link into dnsnet, with the director's address
KEEPALIVED_CAPS = ["NET_ADMIN", "NET_RAW", "NET_BROADCAST"]
DOCKER_DNS = "127.0.0.11"


def _mount(name: str, target: str) -> str:
    return f"./{name}:{target}:ro"


def _init_service(lab: Lab) -> dict[str, Any]:
    net = lab.network
    env = {
        "DNSLAB_PARENT": net.parent,
        "DNSLAB_VLAN_LINK": net.lower_link,
        "DNSLAB_VLAN_ID": str(net.vlan_id),
        "DNSLAB_HOST_LINK": HOST_LINK,
        "DNSLAB_HOST_CIDR": f"{net.director}/{net.subnet.prefixlen}",
        "DNSLAB_SUBNET": str(net.subnet),
        "DNSLAB_VIP": str(net.vip),
        "DNSLAB_VIP_BY_VRRP": "1" if lab.vrrp.enabled else "0",
        "DNSLAB_SYSCTL_FILE": "/etc/dnslab/sysctl.conf",
        "DNSLAB_NOTIFY_FIFO": LVS_NOTIFY_FIFO,
    }
    return {
        "image": IMAGES["tools"],
        "init": True,
        "privileged": True,
        "network_mode": "host",
        "environment": env,
        "volumes": [_mount(INIT_SCRIPT, f"/{INIT_SCRIPT}"), _mount("sysctl.conf", "/etc/dnslab/sysctl.conf"),
                    "/run/dnslab:/run/dnslab"],
        "command": [f"/{INIT_SCRIPT}"],
    }


def _keepalived_service(lab: Lab) -> dict[str, Any]:
    argv = ["keepalived", "--dont-fork", "--log-console", "--log-detail",
            "--use-file", "/etc/keepalived/keepalived.conf"]
    if not lab.vrrp.enabled:
        argv.append("--check")
    depends = {"init": {"condition": "service_completed_successfully"}}
    depends |= {r.name: {"condition": "service_started"} for r in lab.resolvers}
    return {
        "image": IMAGES["keepalived"],
        "network_mode": "host",
        "cap_add": list(KEEPALIVED_CAPS),
        "depends_on": depends,
        "volumes": [_mount("keepalived.conf", "/etc/keepalived/keepalived.conf"), "/run/dnslab:/run/dnslab"],
        "command": argv,
    }


def _resolver_service(lab: Lab, name: str, address: str) -> dict[str, Any]:
    return {
        "image": IMAGES["unbound"],
        "restart": lab.stack.restart,
        "hostname": name,
        "networks": {DNSNET: {"ipv4_address": address}, BRIDGE: {}},
        "volumes": [_mount(f"unbound/{name}.conf", "/etc/unbound/unbound.conf")],
        "command": ["unbound", "-d", "-c", "/etc/unbound/unbound.conf"],
    }


def _client_service(lab: Lab) -> dict[str, Any]:
    nameserver = DOCKER_DNS if lab.stack.client_dns == "docker" else str(lab.network.vip)
    return {
        "image": IMAGES["tools"],
        "init": True,
        "hostname": "client",
        "depends_on": ["keepalived"],
        "networks": {BRIDGE: {}, DNSNET: {"ipv4_address": str(lab.network.client)}},
        # Docker's embedded DNS (127.0.0.11) forwards to these; no public fallback.
        "dns": [str(lab.network.vip)],
        "environment": {"DNSLAB_NAMESERVER": nameserver},
        "command": ["sleep", "infinity"],
    }


def compose_document(lab: Lab) -> dict[str, Any]:
    """compose.yaml as plain data."""
    net = lab.network
    services: dict[str, Any] = {"init": _init_service(lab), "keepalived": _keepalived_service(lab)}
    for r in lab.resolvers:
        services[r.name] = _resolver_service(lab, r.name, str(r.address))
    services["client"] = _client_service(lab)
    return {
        "networks": {
            BRIDGE: {"driver": "bridge", "internal": True},
            DNSNET: {
                "driver": "ipvlan",
                "driver_opts": {"parent": net.lower_link, "ipvlan_mode": net.ipvlan_mode},
                "ipam": {"config": [{"subnet": str(net.subnet)}]},
            },
        },
        "services": services,
    }


def render_compose(lab: Lab) -> str:
    """compose.yaml's text, with a header naming its source."""
    header = (f"# dnslab compose runtime (project {PROJECT}): the seed's layout, rendered by\n"
              f"# lab/render/compose.py from {lab.source}; do not edit by hand.\n"
              f"# Run: docker-compose -p {PROJECT} up -d\n")
    return header + yaml.safe_dump(compose_document(lab), sort_keys=False, default_flow_style=False)


def compose_files(lab: Lab, root: Path = REPO_ROOT) -> dict[str, GuestFile]:
    """The compose project's files keyed by guest path: compose.yaml and everything it mounts."""
    files = {COMPOSE_FILE: GuestFile(render_compose(lab).encode())}
    for r in lab.resolvers:
        files[f"{COMPOSE_DIR}/unbound/{r.name}.conf"] = GuestFile(render_unbound(lab, r).encode())
    files[f"{COMPOSE_DIR}/keepalived.conf"] = GuestFile(render_keepalived(lab).encode())
    files[f"{COMPOSE_DIR}/sysctl.conf"] = GuestFile(render_sysctl(lab).encode())
    script = (root / "lab" / "guest" / INIT_SCRIPT).read_bytes()
    files[f"{COMPOSE_DIR}/{INIT_SCRIPT}"] = GuestFile(script, 0o755)
    return files

