"""The guest's layout: every name and path dnslab uses inside the lab host, in one place.

Unit names, installed files, dnslab's state under /run, the load generator's home under /opt, the
namespaces the network plan creates, and the wrapper that runs a command inside one of them. Pure
constants and string functions: rendering, deploy, status, the chaos probes and actions, and the
reports take these names from here instead of spelling them.

loadtest/ runs inside the guest and imports nothing of ours, so it cannot import this module; the
facts it shares with it (where it is installed and run from) are checked against it by
tests/test_layout.py.
"""

from __future__ import annotations

import shlex

# Units (systemd).
RESOLVER_TEMPLATE = "dnslab-resolver@.service"
KEEPALIVED = "dnslab-keepalived.service"
UNIT_DIR = "/etc/systemd/system"
RESOLVER_UNIT = f"{UNIT_DIR}/{RESOLVER_TEMPLATE}"
RESOLVER_DROPIN = f"{UNIT_DIR}/{RESOLVER_TEMPLATE}.d/removal-on-exit.conf"
KEEPALIVED_UNIT = f"{UNIT_DIR}/{KEEPALIVED}"


def resolver_unit(name: str) -> str:
    """The instance of the resolver template unit that runs resolver `name`."""
    return RESOLVER_TEMPLATE.replace("@", f"@{name}")


# Installed configuration and scripts.
UNBOUND_DIR = "/etc/unbound/dnslab"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
SYSCTL_CONF = "/etc/sysctl.d/60-dnslab.conf"
NETWORK_SCRIPT = "/usr/local/sbin/dnslab-network.sh"
EXIT_WATCHER = "/usr/local/sbin/dnslab-exit-watch"  # lab/guest/dnslab-exit-watch.py


def unbound_path(name: str) -> str:
    """Where resolver `name`'s unbound.conf lives."""
    return f"{UNBOUND_DIR}/{name}.conf"


# Runtime state (tmpfs: gone after a reboot, like the network it describes).
STATE = "/run/dnslab"
STAGE = f"{STATE}/stage"  # deploy uploads files here; the deploy steps install them
DEPLOY_SCRIPT = f"{STATE}/deploy.sh"
SYSCTL_ORIG = f"{STATE}/sysctl.orig"
IPVS_TIMEOUT_ORIG = f"{STATE}/ipvs-timeout.orig"
EXIT_DIR = f"{STATE}/exit"
LVS_NOTIFY_FIFO = f"{STATE}/lvs-notify.fifo"
KEEPALIVED_PIDFILE = "/run/dnslab-keepalived.pid"
CHECKER_PIDFILE = "/run/dnslab-keepalived-checkers.pid"


def exit_file(name: str) -> str:
    """Resolver `name`'s removal-on-exit status file: 1 while it is not running, 0 once it is ready."""
    return f"{EXIT_DIR}/{name}.down"


# The load generator: the image's venv (packer/base/customize.sh) and the deployed loadtest package.
HOME = "/opt/dnslab"
VENV = f"{HOME}/venv"
LOCUST = f"{VENV}/bin/locust"
PYTHON = f"{VENV}/bin/python"
LOADTEST_DIR = f"{HOME}/loadtest"
LOCUSTFILE = f"{LOADTEST_DIR}/dns.py"

# The compose runtime: the one container image every service runs (made from Debian packages by
# lab/image/build.py, imported by packer/scripts/lab-layer.sh), tagged with the guest's release.
CONTAINER_IMAGE = "dnslab/stack"
CONTAINER_TARBALL = "/var/lib/dnslab/images/stack.tar"
COMPOSE_PROJECT = "dnslab"
COMPOSE_DIR = f"{HOME}/compose"
COMPOSE_FILE = f"{COMPOSE_DIR}/compose.yaml"
# Docker's daemons' drop-ins (their CPU weight: lab/render/templates/docker-cpu.conf.j2).
DOCKER_DAEMONS = ("docker.service", "containerd.service")


def docker_cpu_dropin(unit: str) -> str:
    """The drop-in file of Docker daemon `unit` that sets its CPU weight."""
    return f"/etc/systemd/system/{unit}.d/50-dnslab-cpu.conf"


def container_image(release: str) -> str:
    """The container image of guest release `release`."""
    return f"{CONTAINER_IMAGE}:{release}"


def container_name(service: str) -> str:
    """The fixed container name of compose service `service` (the same under compose v1 and v2)."""
    return f"{COMPOSE_PROJECT}-{service}"


# Network namespaces (besides one per resolver, named after it).
CLIENT_NS = "client"
LB_NS = "lb"


def in_ns(ns: str | None, command: str) -> str:
    """`command` (shell text) run inside network namespace `ns`; None: the root namespace."""
    return command if ns is None else f"ip netns exec {shlex.quote(ns)} {command}"
