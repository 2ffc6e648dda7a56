"""The compose runtime's files: a `compose.yaml` in the operator's layout plus every file it mounts.

Pure: `compose_files(lab)` returns the project directory's files keyed by their path in the guest.
The layout follows the seed (snemarch/dns-doodle `keepalived/compose.yaml`): an ipvlan network
`dnsnet` on the VLAN link, the resolvers at fixed addresses, Keepalived on the host network after the
resolvers and a privileged one-shot init container (the seed's fix-network.sh as
lab/guest/dnslab-compose-init.sh), and a client container on dnsnet. No egress bridge: the lab has no
internet, and with a second network Docker 20.10 fails to start a container on the ipvlan l3 network
("failed to set gateway ... file exists"). Every service runs the one image the lab image imported
from Debian packages (lab.model.layout.container_image): no registry is reachable or needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab.model.config import REPO_ROOT, Lab
from lab.model.layout import (
    COMPOSE_DIR,
    COMPOSE_FILE,
    COMPOSE_PROJECT,
    DOCKER_DAEMONS,
    EXIT_DIR,
    LVS_NOTIFY_FIFO,
    container_image,
    container_name,
    docker_cpu_dropin,
    exit_file,
)
from lab.model.stackconf import DOCKER_DNS
from lab.render.files import (
    GuestFile,
    render_docker_cpu_dropin,
    render_keepalived,
    render_sysctl,
    render_unbound,
)

INIT_SCRIPT = "dnslab-compose-init.sh"
EXIT_SCRIPT = "dnslab-docker-exits.py"  # removal on exit's container form (the exit-watch service)
# Each resolver container's labels, read back by EXIT_SCRIPT from Docker's events (its LABEL, ADDRESS_LABEL).
RESOLVER_LABEL = "dnslab.resolver"
ADDRESS_LABEL = "dnslab.address"
DOCKER_SOCKET = "/var/run/docker.sock"
# A mounted file's hash as a label: compose recreates the container when the file changes.
CONFIG_LABEL = "dnslab.config-sha256"
DNSNET = "dnsnet"
HOST_LINK = "dnsnet-host"  # the host's ipvlan link into dnsnet, with the director's address
KEEPALIVED_CAPS = ["NET_ADMIN", "NET_RAW", "NET_BROADCAST"]


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
    if lab.check.removal_on_exit:  # made as 1 (not known to run) before Keepalived reads them
        env["DNSLAB_EXIT_FILES"] = " ".join(exit_file(r.name) for r in lab.resolvers)
    return {
        "image": container_image(lab.vm.release),
        "container_name": container_name("init"),
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
    if lab.check.removal_on_exit:
        depends["exit-watch"] = {"condition": "service_started"}
    return {
        "image": container_image(lab.vm.release),
        "container_name": container_name("keepalived"),
        "network_mode": "host",
        "cap_add": list(KEEPALIVED_CAPS),
        "depends_on": depends,
        "volumes": [_mount("keepalived.conf", "/etc/keepalived/keepalived.conf"), "/run/dnslab:/run/dnslab"],
        "command": argv,
    }


def _resolver_service(lab: Lab, name: str, address: str) -> dict[str, Any]:
    resolver = lab.resolver(name)
    return {
        "image": container_image(lab.vm.release),
        "container_name": container_name(name),
        "restart": lab.stack.restart,
        "labels": {CONFIG_LABEL: GuestFile(render_unbound(lab, resolver).encode()).sha256,
                   RESOLVER_LABEL: name, ADDRESS_LABEL: address},
        "hostname": name,
        "networks": {DNSNET: {"ipv4_address": address}},
        "volumes": [_mount(f"unbound/{name}.conf", "/etc/unbound/unbound.conf")],
        "command": ["unbound", "-d", "-c", "/etc/unbound/unbound.conf"],
    }


def _exit_watch_service(lab: Lab, script: GuestFile) -> dict[str, Any]:
    """Removal on exit in its container form: Docker's die/start events -> the files Keepalived watches."""
    return {
        "image": container_image(lab.vm.release),
        "container_name": container_name("exit-watch"),
        "labels": {CONFIG_LABEL: script.sha256},
        "init": True,
        "restart": "unless-stopped",  # back when Docker's event stream ends (a daemon restart)
        "network_mode": "host",  # it probes a started resolver on its dnsnet address
        "pid": "host",  # and holds a pidfd on its process (Docker's die event comes ~1.6 s later under TCG)
        "depends_on": {"init": {"condition": "service_completed_successfully"}},
        "volumes": [_mount(EXIT_SCRIPT, f"/{EXIT_SCRIPT}"), f"{DOCKER_SOCKET}:{DOCKER_SOCKET}:ro",
                    "/run/dnslab:/run/dnslab"],
        "command": ["python3", f"/{EXIT_SCRIPT}", EXIT_DIR],
    }


def _client_service(lab: Lab) -> dict[str, Any]:
    nameserver = DOCKER_DNS if lab.stack.client_dns == "docker" else str(lab.network.vip)
    return {
        "image": container_image(lab.vm.release),
        "container_name": container_name("client"),
        "init": True,
        "hostname": "client",
        "depends_on": ["keepalived"],
        "networks": {DNSNET: {"ipv4_address": str(lab.network.client)}},
        # Docker's embedded DNS (127.0.0.11) forwards to these; no public fallback.
        "dns": [str(lab.network.vip)],
        "environment": {"DNSLAB_NAMESERVER": nameserver},
        "command": ["sleep", "infinity"],
    }


def services_running(lab: Lab) -> list[str]:
    """The services that run for good (every one but the one-shot init), in compose.yaml's order."""
    watch = ["exit-watch"] if lab.check.removal_on_exit else []
    return ["keepalived", *watch, *(r.name for r in lab.resolvers), "client"]


def compose_document(lab: Lab) -> dict[str, Any]:
    """compose.yaml as plain data."""
    net = lab.network
    services: dict[str, Any] = {"init": _init_service(lab), "keepalived": _keepalived_service(lab)}
    if lab.check.removal_on_exit:
        services["exit-watch"] = _exit_watch_service(lab, exit_script())
    for r in lab.resolvers:
        services[r.name] = _resolver_service(lab, r.name, str(r.address))
    services["client"] = _client_service(lab)
    return {
        "networks": {
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
    header = (f"# dnslab compose runtime (project {COMPOSE_PROJECT}): the seed's layout, rendered by\n"
              f"# lab/render/compose.py from {lab.source}; do not edit by hand.\n"
              f"# Run: docker-compose -p {COMPOSE_PROJECT} up -d\n")
    return header + yaml.safe_dump(compose_document(lab), sort_keys=False, default_flow_style=False)


def docker_host_files(lab: Lab) -> dict[str, GuestFile]:
    """The host's own files of the compose runtime (not the project's): Docker's daemons' CPU weight."""
    dropin = GuestFile(render_docker_cpu_dropin(lab).encode())
    return {docker_cpu_dropin(unit): dropin for unit in DOCKER_DAEMONS}


def exit_script(root: Path = REPO_ROOT) -> GuestFile:
    """The exit-watch service's program (lab/guest/dnslab-docker-exits.py)."""
    return GuestFile((root / "lab" / "guest" / EXIT_SCRIPT).read_bytes(), 0o755)


def compose_files(lab: Lab, root: Path = REPO_ROOT) -> dict[str, GuestFile]:
    """The compose project's files keyed by guest path: compose.yaml and everything it mounts."""
    files = {COMPOSE_FILE: GuestFile(render_compose(lab).encode())}
    for r in lab.resolvers:
        files[f"{COMPOSE_DIR}/unbound/{r.name}.conf"] = GuestFile(render_unbound(lab, r).encode())
    files[f"{COMPOSE_DIR}/keepalived.conf"] = GuestFile(render_keepalived(lab).encode())
    files[f"{COMPOSE_DIR}/sysctl.conf"] = GuestFile(render_sysctl(lab).encode())
    script = (root / "lab" / "guest" / INIT_SCRIPT).read_bytes()
    files[f"{COMPOSE_DIR}/{INIT_SCRIPT}"] = GuestFile(script, 0o755)
    if lab.check.removal_on_exit:
        files[f"{COMPOSE_DIR}/{EXIT_SCRIPT}"] = exit_script(root)
    return files

