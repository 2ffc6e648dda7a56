"""Faults an experiment can leave in the lab, as plain data: deploy clears them, the health check sees them.

The chaos actions can leave a resolver SIGSTOPped, its link down or a netem qdisc on its link; a
killed or stopped resolver or Keepalived (the service steps restart them); and director sysctls and
IPVS timeouts other than the lab's (the tuning steps set them back). The first three are no part of
what deploy builds, so `leftover_steps` clears them first (each check passes when there is nothing to
clear, e.g. before the first deploy). `health_checks` lists every state a healthy lab must be in,
for chaos.probes.health, which reports each failing check by name: a leftover netem delay or a
stopped resolver no longer hides behind a DNS answer that is merely slow.
"""

from __future__ import annotations

from lab.model.config import Lab
from lab.model.layout import KEEPALIVED, resolver_unit
from lab.render.netplan import UP, Step, link_name, tuning_steps


def leftover_steps(lab: Lab) -> list[Step]:
    """Per resolver: its link up, no netem qdisc on it, its process not stopped by SIGSTOP."""
    steps = []
    for r in lab.resolvers:
        ns, dev, unit = r.name, link_name(r.name), resolver_unit(r.name)
        steps += [
            Step(name=f"resolver {r.name}: link {dev} up (no link_down left)",
                 check=(f"! ip -n {ns} link show dev {dev} >/dev/null 2>&1 || "
                        f"{{ o=$(ip -n {ns} -o link show dev {dev}) && [[ $o == {UP} ]]; }}"),
                 apply=f"ip -n {ns} link set dev {dev} up"),
            Step(name=f"resolver {r.name}: no netem qdisc on {dev}",
                 check=f"! tc -n {ns} qdisc show dev {dev} 2>/dev/null | grep -qw netem",
                 apply=f"tc -n {ns} qdisc del dev {dev} root"),
            Step(name=f"resolver {r.name}: not stopped (SIGSTOP)",
                 check=(f"pid=$(systemctl show -p MainPID --value {unit}) && {{ [ \"${{pid:-0}}\" = 0 ] || "
                        f"! grep -q '^State:[[:space:]]*[Tt]' /proc/$pid/status; }}"),
                 apply=f"kill -CONT $(systemctl show -p MainPID --value {unit})"),
        ]
    return steps


def health_checks(lab: Lab) -> list[tuple[str, str]]:
    """(name, bash check) of every state a healthy lab is in besides its answers: no leftover fault,
    every unit active, the director's sysctls and IPVS timeouts as the lab sets
    them. (The compose runtime's: lab.ops.compose_steps.compose_health_checks.)"""
    units = [resolver_unit(r.name) for r in lab.resolvers] + [KEEPALIVED]
    checks = [(s.name, s.check) for s in leftover_steps(lab)]
    checks += [(f"{unit} active", f"systemctl is-active -q {unit}") for unit in units]
    checks += [(s.name, s.check) for s in tuning_steps(lab)]
    return checks

