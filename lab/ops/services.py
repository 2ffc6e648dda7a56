"""The service half of a deploy as ordered plain data: file installs, units, readiness.

Pure: every step's check compares the guest with hashes of the rendered files, so a step acts
only when something it depends on changed. Files are staged under STAGE by deploy and installed
by these steps; Keepalived's config is validated by the guest's own `keepalived -t` before it
replaces the running one, so a rejected config leaves the old one in force.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping

from lab.model.config import Lab
from lab.model.layout import (
    COMPOSE_PROJECT,
    EXIT_DIR,
    EXIT_WATCHER,
    KEEPALIVED,
    KEEPALIVED_CONF,
    KEEPALIVED_UNIT,
    NETWORK_SCRIPT,
    RESOLVER_DROPIN,
    RESOLVER_UNIT,
    STAGE,
    STATE,
    exit_file,
    in_ns,
    resolver_unit,
    unbound_path,
)
from lab.ops.validate import IN_NETNS, config_links
from lab.render.files import GuestFile, vip_link
from lab.render.netplan import Step, topology_signature

READY_TIMEOUT_S = 30


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _loaded(marker: str, value: str) -> str:
    return f"marker_is {marker} '{value}'"


def retire_step(lab: Lab) -> Step:
    """Take down a previously deployed network whose topology differs (a variant change)."""
    sig = topology_signature(lab)
    return Step(
        name="network: previous topology retired when it differs",
        check=f"[ ! -x {NETWORK_SCRIPT} ] || grep -qx '# topology: {sig}' {NETWORK_SCRIPT}",
        apply=f"{NETWORK_SCRIPT} down >/dev/null && rm -f {NETWORK_SCRIPT}",
    )


def exit_files_exist(lab: Lab) -> str:
    """Shell: create each resolver's missing status file as 1 (not known to run). Keepalived 2.3
    rejects a track_file whose file does not exist yet (2.2 accepts it); exit_files_step makes them
    match the units once the resolvers run."""
    if not lab.check.removal_on_exit:
        return ""
    made = "; ".join(f"[ -e {exit_file(r.name)} ] || echo 1 > {exit_file(r.name)}" for r in lab.resolvers)
    return f"mkdir -p {EXIT_DIR}; {made}; "


def keepalived_test(file: GuestFile, staged: str) -> str:
    """The guest's config test of a staged keepalived.conf. One naming links (a VRRP instance) is
    tested in a throwaway network namespace holding links of those names, as on this machine
    (lab.ops.validate): on a fresh guest the director's link does not exist before the network step."""
    links = config_links(file.content.decode(errors="replace"))
    if not links:
        return f"keepalived --config-test --use-file {staged}"
    return " ".join(["unshare --net sh -c", shlex.quote(IN_NETNS), "sh keepalived", staged,
                     *(shlex.quote(link) for link in links)])


def file_step(path: str, file: GuestFile, before: str = "") -> Step:
    """Install a staged file when the guest's copy has another sha256 (`before`: shell run first,
    e.g. exit_files_exist for keepalived.conf's config test)."""
    staged = f"{STAGE}{path}"
    validate = ""
    if path == KEEPALIVED_CONF:
        validate = (f"{before}out=$({keepalived_test(file, staged)} 2>&1) || "
                    f"{{ printf 'keepalived -t rejected the new config; the running Keepalived keeps "
                    f"the old one:\\n%s\\n' \"$out\" >&2; exit 1; }}; ")
    return Step(
        name=f"file {path}",
        check=f"file_is {file.sha256} {shlex.quote(path)}",
        apply=f"{validate}install -D -m {file.mode:o} {staged} {path}",
        undo=f"rm -f {path}",
    )


def units_step(files: Mapping[str, GuestFile]) -> Step:
    digest = _digest(files[RESOLVER_UNIT].sha256, files[RESOLVER_DROPIN].sha256,
                     files[KEEPALIVED_UNIT].sha256)
    return Step(
        name="systemd: unit files loaded",
        check=_loaded("units.loaded", digest),
        apply=f"systemctl daemon-reload && echo {digest} > {STATE}/units.loaded",
    )


def resolver_step(lab: Lab, name: str, files: Mapping[str, GuestFile]) -> Step:
    """The resolver's unit runs with the current config (restarted when its config, unit, drop-in
    (removal on exit, whose watcher starts with the resolver) or the network changed)."""
    unit = resolver_unit(name)
    digest = _digest(files[unbound_path(name)].sha256, files[RESOLVER_UNIT].sha256,
                     files[RESOLVER_DROPIN].sha256, files[EXIT_WATCHER].sha256, topology_signature(lab))
    marker = f"resolver-{name}.loaded"
    return Step(
        name=f"resolver {name}: {unit} running",
        check=f"unit_active {unit} && {_loaded(marker, digest)}",
        apply=f"systemctl restart {unit} && echo {digest} > {STATE}/{marker}",
        undo=f"systemctl stop {unit} 2>/dev/null; rm -f {STATE}/{marker}",
    )


def exit_files_step(lab: Lab) -> Step:
    """Removal on exit: each resolver's status file says what its unit is (0 active, 1 not) before
    Keepalived reads them. The unit and its watcher keep them true from then on; this covers the
    moment after a restart before the watcher has started and written 0."""
    def want(name: str) -> str:
        return f"$(systemctl is-active -q {resolver_unit(name)} && echo 0 || echo 1)"

    check = " && ".join(f"[ \"$(cat {exit_file(r.name)} 2>/dev/null)\" = \"{want(r.name)}\" ]"
                        for r in lab.resolvers)
    apply = "; ".join([f"mkdir -p {EXIT_DIR}"] + [f"echo {want(r.name)} > {exit_file(r.name)}"
                                                   for r in lab.resolvers])
    return Step(name="removal on exit: every resolver's status file matches its unit",
                check=check, apply=apply)


def keepalived_step(lab: Lab, files: Mapping[str, GuestFile]) -> Step:
    """Keepalived runs the current config: reloaded (SIGHUP) when only its config changed."""
    unit_digest = _digest(files[KEEPALIVED_UNIT].sha256, topology_signature(lab))
    want = f"{unit_digest} {files[KEEPALIVED_CONF].sha256[:16]}"
    marker = f"{STATE}/keepalived.loaded"
    vip = lab.network.vip
    clear = "; ".join(
        in_ns(lab.network.director_netns, f"ipvsadm -D -{'u' if p == 'udp' else 't'} {vip}:53 2>/dev/null")
        for p in ("udp", "tcp")
    )
    return Step(
        name=f"keepalived: {KEEPALIVED} running the current config",
        check=f"unit_active {KEEPALIVED} && {_loaded('keepalived.loaded', want)}",
        apply=(f"if systemctl is-active -q {KEEPALIVED} && "
               f"[ \"$(cut -d' ' -f1 {marker} 2>/dev/null)\" = {unit_digest} ]; "
               f"then systemctl reload {KEEPALIVED}; else systemctl restart {KEEPALIVED}; fi "
               f"&& echo '{want}' > {marker}"),
        undo=f"systemctl stop {KEEPALIVED} 2>/dev/null; {clear}; rm -f {marker}",
    )


def ipvs_expected(lab: Lab) -> list[str]:
    """Bash tests on `t`, the output of `ipvsadm -Ln | tr -s ' '`, that hold once Keepalived
    has put every virtual server (scheduler, flags) and every real server (weight 1) in place."""
    tests = []
    for proto in lab.ipvs.protocols:
        flags = " ops" if lab.ipvs.ops and proto == "udp" else ""
        line = f"{proto.upper()} {lab.network.vip}:53 {lab.ipvs.lb_algo}{flags}"
        tests.append(f"[[ $t == *\"{line}\"$'\\n'* ]]")
    tests += [f"[[ $t == *\" -> {r.address}:53 Masq 1 \"* ]]" for r in lab.resolvers]
    return tests


def ready_step(lab: Lab) -> Step:
    """IPVS lists every virtual and real server; after any change, every resolver answers too."""
    ns = lab.network.director_netns
    table = in_ns(ns, "ipvsadm -Ln")
    rows = " && ".join(ipvs_expected(lab))
    if lab.vrrp.enabled:  # Keepalived's VRRP instance holds the VIP once it is MASTER
        addrs = in_ns(ns, f"ip -o -4 addr show dev {vip_link(lab)}")
        rows += f" && [[ $({addrs}) == *' inet {lab.network.vip}/32 '* ]]"
    digs = "; ".join(f"answers {r.address} {r.name} & p{i}=$!" for i, r in enumerate(lab.resolvers))
    waits = " && ".join(f"wait $p{i}" for i in range(len(lab.resolvers)))
    answers = f"{{ [ -z \"${{DNSLAB_CHANGED:-}}\" ] || {{ {digs}; {waits}; }}; }}"
    check = f"t=$({table} | tr -s ' ') && {rows} && {answers}"
    tries = READY_TIMEOUT_S * 5
    return Step(
        name="ready: IPVS lists every real server (and, after a change, every resolver answers)",
        check=check,
        apply=(f"for i in $(seq {tries}); do {{ {check}; }} >/dev/null 2>&1 && exit 0; sleep 0.2; done; "
               f"echo \"not ready after {READY_TIMEOUT_S} s; IPVS table:\" >&2; {table} >&2; exit 1"),
    )


def preamble(lab: Lab, files: Mapping[str, GuestFile], units: list[str] | None = None) -> str:
    """Shell helpers for the deploy runner: one snapshot of file hashes and unit states, read
    with builtins by the checks (a check falls back to the real command when the snapshot says
    no), and the resolver probe."""
    if units is None:
        units = [*(resolver_unit(r.name) for r in lab.resolvers), KEEPALIVED]
    probe = in_ns(lab.network.director_netns, "dig +time=1 +tries=1 +short @$1 who.lab.test TXT")
    return "\n".join([
        "declare -A SNAP_SHA SNAP_ACTIVE",
        "while read -r h p; do SNAP_SHA[$p]=$h; done < <(sha256sum "
        + " ".join(shlex.quote(p) for p in files) + " 2>/dev/null)",
        f"UNITS=({' '.join(units)}); i=0",
        "while read -r st; do SNAP_ACTIVE[${UNITS[i]}]=$st; i=$((i + 1)); done "
        "< <(systemctl is-active \"${UNITS[@]}\" 2>/dev/null)",
        "file_is() { [ \"${SNAP_SHA[$2]:-}\" = \"$1\" ] "
        "|| echo \"$1  $2\" | sha256sum -c --status 2>/dev/null; }",
        "unit_active() { [ \"${SNAP_ACTIVE[$1]:-}\" = active ] || systemctl is-active -q \"$1\"; }",
        f"marker_is() {{ local v; read -r v < {STATE}/$1 && [ \"$v\" = \"$2\" ]; }} 2>/dev/null",
        f"answers() {{ [ \"$({probe})\" = \"\\\"$2\\\"\" ]; }}",
    ])


def service_steps(lab: Lab, files: Mapping[str, GuestFile]) -> list[Step]:
    """Units, resolvers, Keepalived and readiness, in that order."""
    steps = [units_step(files)]
    steps += [resolver_step(lab, r.name, files) for r in lab.resolvers]
    if lab.check.removal_on_exit:
        steps.append(exit_files_step(lab))
    steps += [keepalived_step(lab, files), ready_step(lab)]
    return steps


# Bash: no container of the compose runtime's project exists (Docker's daemon is down, or has none).
COMPOSE_ABSENT = ("! systemctl is-active -q docker.service || "
                  f"[ -z \"$(docker ps -aq --filter label=com.docker.compose.project={COMPOSE_PROJECT})\" ]")


def no_compose_step() -> Step:
    """The compose runtime's stack is not up here (its containers would hold the same addresses)."""
    return Step(
        name="runtime: no compose-runtime stack deployed here",
        check=COMPOSE_ABSENT,
        apply=("echo 'the compose runtime stack is deployed on this guest; remove it first: "
               "fab teardown --lab with runtime = \"compose\"' >&2; false"),
    )


def deploy_steps(lab: Lab, files: Mapping[str, GuestFile], network: list[Step], *,
                 clear_faults: bool = True) -> list[Step]:
    """The whole deploy: retire a different topology, clear faults an experiment left (unless
    `clear_faults` is off: a deploy within an experiment), install files, network, services."""
    from lab.ops.leftovers import leftover_steps

    installs = [file_step(path, file, exit_files_exist(lab) if path == KEEPALIVED_CONF else "")
                for path, file in files.items()]
    leftovers = leftover_steps(lab) if clear_faults else []
    return [no_compose_step(), retire_step(lab), *leftovers, *installs, *network,
            *service_steps(lab, files)]
