"""The compose runtime's deploy as ordered plain data, run by the same step runner as the systemd one.

Pure: `compose_steps(lab, files)` returns Steps (check / apply / undo bash snippets) over the compose
project's files (lab.render.compose) and the load generator's. In order: refuse a guest that runs the
systemd runtime's stack, the director's tuning, Docker's daemon and the lab image's container image,
the files, `docker-compose up -d` (only when compose.yaml, the init script or the sysctl file changed,
or a container is not in its state), Keepalived's config (SIGHUP when only keepalived.conf changed, as
the systemd runtime reloads), a named network namespace per resolver and for the client (so the
probes, the health check, the chaos actions and the load generator reach them as under systemd), and
readiness. `down` undoes it all in reverse, down to Docker's own iptables chains.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from lab.model.config import Lab
from lab.model.layout import (
    COMPOSE_FILE,
    COMPOSE_PROJECT,
    DOCKER_DAEMONS,
    NETWORK_SCRIPT,
    STATE,
    container_image,
    container_name,
    docker_cpu_dropin,
)
from lab.ops.services import _digest, file_step, preamble, ready_step
from lab.render.compose import COMPOSE_DIR, HOST_LINK, INIT_SCRIPT, services_running
from lab.render.files import DOCKER_CPU_WEIGHT, GuestFile
from lab.render.netplan import Step, tuning_steps

DOCKER_UNITS = "docker.service docker.socket containerd.service"
# compose v1 (bookworm's docker-compose) or v2 (trixie's), whichever the guest has.
_PROJECT = f"-p {COMPOSE_PROJECT} -f {COMPOSE_FILE}"
COMPOSE = (f"compose() {{ if command -v docker-compose >/dev/null; then docker-compose {_PROJECT} \"$@\"; "
           f"else docker compose {_PROJECT} \"$@\"; fi; }}")
# Docker's own iptables rules and chains and its default bridge, removed when the daemon stops for good.
DOCKER_RULES_CLEAR = ("iptables-save | grep -v -e DOCKER -e docker0 | iptables-restore; "
                      "iptables -P FORWARD ACCEPT; ip link del docker0 2>/dev/null; true")


def _inspect(name: str, fmt: str) -> str:
    return f"docker inspect -f {shlex.quote(fmt)} {shlex.quote(container_name(name))} 2>/dev/null"


def running_check(service: str) -> str:
    """Bash: the service's container is running."""
    return f"[ \"$({_inspect(service, '{{.State.Running}}')})\" = true ]"


def runtime_step() -> Step:
    """The systemd runtime's stack is not deployed here (its namespaces would hold the same addresses)."""
    return Step(
        name="runtime: no systemd-runtime stack deployed here",
        check=f"[ ! -e {NETWORK_SCRIPT} ]",
        apply=("echo 'the systemd runtime stack is deployed on this guest; remove it first: "
               "fab teardown --lab with runtime = \"systemd\"' >&2; false"),
    )


def unpaused_steps(lab: Lab) -> list[Step]:
    """No resolver left paused by an experiment (`docker pause`, the hang case)."""
    return [Step(name=f"resolver {r.name}: container not paused",
                 check=f"[ \"$({_inspect(r.name, '{{.State.Paused}}')})\" != true ]",
                 apply=f"docker unpause {shlex.quote(container_name(r.name))}")
            for r in lab.resolvers]


def daemon_step() -> Step:
    """Docker's daemon runs (the image leaves it disabled at boot); teardown stops it and its rules."""
    return Step(
        name="docker: daemon running",
        check="systemctl is-active -q docker.service",
        apply="systemctl start docker.service",
        undo=f"systemctl stop {DOCKER_UNITS}; {DOCKER_RULES_CLEAR}",
    )


def daemon_weight_step() -> Step:
    """Docker's daemons at the CPU weight of their drop-ins (docker_host_files), applied to the running
    daemons by a reload; teardown removes the drop-ins and reloads again."""
    weights = " && ".join(f"[ \"$(systemctl show -P CPUWeight {unit})\" = {DOCKER_CPU_WEIGHT} ]"
                          for unit in DOCKER_DAEMONS)
    dropins = " ".join(docker_cpu_dropin(unit) for unit in DOCKER_DAEMONS)
    return Step(
        name=f"docker: daemons at CPU weight {DOCKER_CPU_WEIGHT} (the data path first)",
        check=weights,
        apply="systemctl daemon-reload",
        undo=f"rm -f {dropins}; systemctl daemon-reload",
    )


def image_step(lab: Lab) -> Step:
    """The lab image's container image (packer/base/customize.sh, imported at image build) is there."""
    image = container_image(lab.vm.release)
    return Step(
        name=f"docker: image {image} present",
        check=f"docker image inspect {image} >/dev/null",
        apply=(f"echo 'the guest has no {image}: it comes with the lab image; rebuild that (fab image) "
               "and boot it anew (fab down; fab up)' >&2; false"),
    )


def vlan_step(lab: Lab) -> Step:
    """The host's VLAN link with its own address, as the operator's host network config has it before
    compose starts: Docker's ipvlan network sits on it, and a VRRP instance holding the VIP there needs an
    IPv4 address on it (else it stays in FAULT). A /32: the containers' subnet route is dnsnet-host's."""
    net = lab.network
    link, addr = net.lower_link, f"{net.vlan_host}/32"
    return Step(
        name=f"host: VLAN link {link} up with the host's address {addr}",
        check=f"o=$(ip -o -4 addr show dev {link} 2>/dev/null) && [[ $o == *' inet {addr} '* ]] && "
              f"[[ $(ip -o link show dev {link}) == *',UP'* ]]",
        apply=(f"{{ ip link show dev {link} >/dev/null 2>&1 || ip link add link {net.parent} name {link} "
               f"type vlan id {net.vlan_id}; }} && ip link set dev {link} up && "
               f"ip addr replace {addr} dev {link}"),
        undo=f"ip link del {link} 2>/dev/null; true",
    )


def host_setup_step(lab: Lab) -> Step:
    """Nothing to do on the way up (the init container does it); on the way down, undo what it did:
    the host's ipvlan link into dnsnet, the SNAT rule, and the VIP when no VRRP instance holds it."""
    net = lab.network
    snat = (f"-s {net.subnet} -o {HOST_LINK} -j SNAT --to-source {net.vip}")
    return Step(
        name="host: the init container's link, SNAT rule and VIP (undone on teardown)",
        check="true",
        apply="true",
        undo=(f"ip link del {HOST_LINK} 2>/dev/null; "
              f"while iptables -t nat -C POSTROUTING {snat} 2>/dev/null; do "
              f"iptables -t nat -D POSTROUTING {snat}; done; "
              f"ip addr del {net.vip}/32 dev {net.lower_link} 2>/dev/null; true"),
    )


def up_step(lab: Lab, files: Mapping[str, GuestFile]) -> Step:
    """`compose up -d` when the project's own files changed or a container is not as it should be.
    Each resolver's compose service carries its config's hash as a label: a changed unbound.conf
    recreates that container only."""
    digest = _digest(*(files[f"{COMPOSE_DIR}/{name}"].sha256
                       for name in ("compose.yaml", INIT_SCRIPT, "sysctl.conf")))
    marker = f"{STATE}/compose.up"
    states = " ".join(shlex.quote(container_name(s)) for s in services_running(lab))
    want = " ".join(["exited:0"] + ["running:false"] * len(services_running(lab)))
    fmt = "{{.State.Status}}:{{if .State.Running}}{{.State.Paused}}{{else}}{{.State.ExitCode}}{{end}}"
    check = (f"marker_is compose.up {digest} && "
             f"[ \"$(docker inspect -f {shlex.quote(fmt)} {shlex.quote(container_name('init'))} {states} "
             f"2>/dev/null | xargs)\" = {shlex.quote(want)} ]")
    return Step(
        name="compose: project up with the current compose.yaml, every container running",
        check=check,
        apply=f"compose up -d --remove-orphans && echo {digest} > {marker}",
        undo=f"compose down --remove-orphans --volumes --timeout 5; rm -f {marker}",
    )


def keepalived_step(lab: Lab, files: Mapping[str, GuestFile]) -> Step:
    """Keepalived's container runs the current keepalived.conf: SIGHUP (a reload) when the file changed
    under a running container; a new container read it at start."""
    sha = files[f"{COMPOSE_DIR}/keepalived.conf"].sha256[:16]
    marker = f"{STATE}/compose-keepalived.loaded"
    cid = _inspect("keepalived", "{{.Id}}")
    name = shlex.quote(container_name("keepalived"))
    return Step(
        name="keepalived: its container running the current keepalived.conf",
        check=f"marker_is compose-keepalived.loaded \"{sha} $({cid})\"",
        apply=(f"c=$({cid}) && {{ [ \"$(cut -d' ' -f2 {marker} 2>/dev/null)\" != \"$c\" ] "
               f"|| docker kill -s HUP {name} >/dev/null; }} && echo \"{sha} $c\" > {marker}"),
        undo=f"rm -f {marker}",
    )


def netns_steps(lab: Lab) -> list[Step]:
    """`ip netns attach`: each resolver's container's network namespace named after the resolver, the
    client's `client`, as the systemd runtime names its own (a restarted container gets a new one)."""
    steps = []
    for service, ns in [*((r.name, r.name) for r in lab.resolvers), ("client", "client")]:
        pid = _inspect(service, "{{.State.Pid}}")
        steps.append(Step(
            name=f"netns {ns}: names container {container_name(service)}'s network namespace",
            check=(f"p=$({pid}) && [ \"${{p:-0}}\" -gt 0 ] && [ \"$(stat -L -c %i /run/netns/{ns} "
                   f"2>/dev/null)\" = \"$(stat -L -c %i /proc/$p/ns/net)\" ]"),
            apply=f"ip netns delete {ns} 2>/dev/null; ip netns attach {ns} $({pid})",
            undo=f"ip netns delete {ns} 2>/dev/null; true",
        ))
    return steps


def compose_steps(lab: Lab, files: Mapping[str, GuestFile], *, clear_faults: bool = True) -> list[Step]:
    """The whole compose deploy (`clear_faults` off: a deploy within an experiment leaves pauses be)."""
    installs = [file_step(path, file) for path, file in files.items()]
    leftovers = unpaused_steps(lab) if clear_faults else []
    return [runtime_step(), *tuning_steps(lab), daemon_step(), image_step(lab), *leftovers, *installs,
            daemon_weight_step(), vlan_step(lab), host_setup_step(lab), up_step(lab, files),
            keepalived_step(lab, files), *netns_steps(lab), ready_step(lab)]


def compose_preamble(lab: Lab, files: Mapping[str, GuestFile]) -> str:
    """The step runner's helpers (no systemd units to snapshot) and the `compose` command."""
    return preamble(lab, files, units=[]) + "\n" + COMPOSE


def compose_health_checks(lab: Lab) -> list[tuple[str, str]]:
    """(name, bash check) of every state a healthy compose lab is in besides its answers: no container
    paused, every long-running one running, the resolvers' and the client's namespaces named (a container
    started anew has a new one), the tuning. The systemd runtime's: lab.ops.leftovers.health_checks."""
    checks = [(s.name, s.check) for s in unpaused_steps(lab)]
    checks += [(f"container {container_name(s)} running", running_check(s)) for s in services_running(lab)]
    checks += [(s.name, s.check) for s in [*netns_steps(lab), *tuning_steps(lab)]]
    return checks
