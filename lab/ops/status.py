"""`fab status`: the IPVS table, each real server's check state, the resolver units, the sysctls.

One SSH round trip gathers raw text; `parse_status` (pure) turns it into a dict, and
`format_status` into readable tables.
"""

from __future__ import annotations

import io
import re
import shlex
from typing import Any

from rich.console import Console
from rich.table import Table

from lab.model.config import Lab
from lab.model.layout import EXIT_DIR, KEEPALIVED, container_name, in_ns, resolver_unit
from lab.ssh import remote

SECTION = "=== dnslab:"
VS_RE = re.compile(r"^(UDP|TCP)\s+(\S+):(\d+)\s+(\S+)(.*)$")
RS_RE = re.compile(r"^\s+->\s+(\S+):(\d+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)")
EVENT_RE = re.compile(
    r"(Adding|Removing|Enabling|Disabling) service \[([\d.]+)\]:(\w+):(\d+) (?:to|from) VS \[([\d.]+)\]")
UP_EVENTS = ("Adding", "Enabling")
EXIT_WORDS = {None: "-", "": "(none)", "0": "0 running", "1": "1 exited"}  # removal on exit's file


def unit_names(lab: Lab) -> dict[str, str]:
    """What runs each resolver and Keepalived ("keepalived"): its systemd unit, or under compose its
    container (and the exit-watch service's, with removal on exit)."""
    if lab.stack.runtime == "compose":
        watch = ["exit-watch"] if lab.check.removal_on_exit else []  # removal on exit's container form
        names = [*(r.name for r in lab.resolvers), "keepalived", *watch]
        return {name: container_name(name) for name in names}
    return {**{r.name: resolver_unit(r.name) for r in lab.resolvers}, "keepalived": KEEPALIVED}


def _units_and_log(lab: Lab) -> list[str]:
    """The units section (each unit or container and its state) and Keepalived's log since it started."""
    names = unit_names(lab)
    units = " ".join(names.values())
    if lab.stack.runtime == "compose":
        state = "{{.State.Status}}"
        return [f"echo '{SECTION} units'",
                f"for u in {units}; do "
                f"echo \"$u $(docker inspect -f '{state}' $u 2>/dev/null || echo absent)\"; done",
                f"echo '{SECTION} journal'",
                f"docker logs {names['keepalived']} 2>&1 | grep -F 'service ['"]
    return [f"echo '{SECTION} units'", f"for u in {units}; do echo \"$u $(systemctl is-active $u)\"; done",
            f"echo '{SECTION} journal'",
            f"inv=$(systemctl show -p InvocationID --value {KEEPALIVED}); [ -z \"$inv\" ] || "
            f"journalctl _SYSTEMD_INVOCATION_ID=$inv -o cat --no-pager 2>/dev/null | grep -F 'service ['"]


def status_command(lab: Lab) -> str:
    """One shell command printing every section `parse_status` reads."""
    ns = lab.network.director_netns
    keys = " ".join(shlex.quote(key) for key, _ in lab.sysctl)
    return "; ".join([
        f"echo '{SECTION} ipvs'", in_ns(ns, "ipvsadm -Ln 2>&1"),
        f"echo '{SECTION} timeout'", in_ns(ns, "ipvsadm -L --timeout 2>&1"),
        f"echo '{SECTION} sysctl'", in_ns(ns, f"sysctl net.ipv4.vs {keys} 2>&1 | sort -u"),
        f"echo '{SECTION} exit'", f"for f in {EXIT_DIR}/*.down; do [ -f \"$f\" ] && "
        "echo \"$(basename \"$f\" .down) $(cat \"$f\")\"; done",
        *_units_and_log(lab),
        "true",
    ])


def _sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith(SECTION):
            current = line[len(SECTION):].strip()
            out[current] = []
        elif current:
            out[current].append(line)
    return out


def parse_ipvs(lines: list[str]) -> list[dict[str, Any]]:
    """`ipvsadm -Ln` as a list of virtual servers, each with its real servers."""
    services: list[dict[str, Any]] = []
    for line in lines:
        if match := VS_RE.match(line):
            proto, vip, port, sched, flags = match.groups()
            services.append({"proto": proto.lower(), "vip": vip, "port": int(port), "scheduler": sched,
                             "flags": flags.split(), "real_servers": []})
        elif (match := RS_RE.match(line)) and services:
            ip, port, fwd, weight, active, inactive = match.groups()
            services[-1]["real_servers"].append({
                "real_server": f"{ip}:{port}", "forward": fwd, "weight": int(weight),
                "active_conns": int(active), "inactive_conns": int(inactive)})
    return services


def parse_check_events(lines: list[str]) -> dict[str, dict[str, str]]:
    """The last Keepalived verdict per `proto/IP:53`: up or down, with its log line."""
    state: dict[str, dict[str, str]] = {}
    for line in lines:
        if match := EVENT_RE.search(line):
            verb, ip, proto, port, _vip = match.groups()
            state[f"{proto}/{ip}:{port}"] = {"state": "up" if verb in UP_EVENTS else "down",
                                             "last_event": line.strip()}
    return state


def parse_status(lab: Lab, text: str) -> dict[str, Any]:
    """Plain data from the raw text of `status_command`."""
    sec = _sections(text)
    services = parse_ipvs(sec.get("ipvs", []))
    events = parse_check_events(sec.get("journal", []))
    checks = []
    for proto in lab.ipvs.protocols:
        table = {rs["real_server"]: rs for s in services if s["proto"] == proto
                 for rs in s["real_servers"]}
        for r in lab.resolvers:
            in_table = table.get(r.real_server)
            event = events.get(f"{proto}/{r.real_server}")
            alive = "up" if in_table and in_table["weight"] > 0 else "down"
            verdict = event["state"] if event else alive
            checks.append({"resolver": r.name, "proto": proto, "real_server": r.real_server,
                           "check": lab.check.type + (" + FILE_CHECK" if lab.check.removal_on_exit else ""),
                           "state": verdict,
                           "in_ipvs": bool(in_table), "weight": in_table["weight"] if in_table else None,
                           "last_event": event["last_event"] if event else ""})
    units = dict(line.split(" ", 1) for line in sec.get("units", []) if " " in line)
    exits = dict(line.split(" ", 1) for line in sec.get("exit", []) if " " in line)
    for c in checks:  # removal on exit: what the resolver's unit last told Keepalived (1 = exited)
        c["exit_file"] = exits.get(c["resolver"], "") if lab.check.removal_on_exit else None
    sysctl = {}
    for line in sec.get("sysctl", []):
        key, sep, value = line.partition(" = ")
        if sep:
            sysctl[key.strip()] = " ".join(value.split())
    timeout = " ".join(sec.get("timeout", [])).rpartition(": ")[2].split()
    return {
        "director_netns": lab.network.director_netns or "root",
        "vip": str(lab.network.vip),
        "ipvs": services,
        "ipvs_timeouts": dict(zip(("tcp", "tcpfin", "udp"), map(int, timeout), strict=False))
        if all(t.isdigit() for t in timeout) else {},
        "checks": checks,
        "units": {name: units.get(unit, "?") for name, unit in unit_names(lab).items()},
        "runtime": lab.stack.runtime,
        "sysctl": sysctl,
    }


def read_status(lab: Lab, conn) -> dict[str, Any]:
    """The lab's live state, read in one SSH round trip."""
    return parse_status(lab, remote.run(conn, status_command(lab)).stdout)


def format_status(data: dict[str, Any]) -> str:
    """Readable tables of what `read_status` returned."""
    console = Console(file=io.StringIO(), width=110, force_terminal=False, color_system=None)
    ipvs = Table(title=f"IPVS in the {data['director_netns']} namespace (VIP {data['vip']})")
    for col in ("service", "scheduler", "real server", "fwd", "weight", "active", "inactive"):
        ipvs.add_column(col)
    for s in data["ipvs"]:
        name = f"{s['proto']} {s['vip']}:{s['port']}"
        sched = " ".join([s["scheduler"], *s["flags"]])
        if not s["real_servers"]:
            ipvs.add_row(name, sched, "(none)", "", "", "", "")
        for rs in s["real_servers"]:
            ipvs.add_row(name, sched, rs["real_server"], rs["forward"], str(rs["weight"]),
                         str(rs["active_conns"]), str(rs["inactive_conns"]))
            name = sched = ""
    console.print(ipvs)
    checks = Table(title="Health checks (Keepalived's last verdict, else the IPVS table)")
    runs_in = "container" if data.get("runtime") == "compose" else "unit"
    for col in ("resolver", "proto", "real server", "check", "state", runs_in, "exit file"):
        checks.add_column(col)
    for c in data["checks"]:
        unit = data["units"].get(c["resolver"], "?")
        exit_file = EXIT_WORDS.get(c["exit_file"], c["exit_file"])
        checks.add_row(c["resolver"], c["proto"], c["real_server"], c["check"], c["state"], unit, exit_file)
    console.print(checks)
    console.print(f"keepalived: {data['units'].get('keepalived', '?')}    IPVS timeouts: "
                  + " ".join(f"{k}={v}s" for k, v in data["ipvs_timeouts"].items()))
    sysctl = Table(title=f"sysctls in force ({data['director_netns']} namespace)")
    sysctl.add_column("key")
    sysctl.add_column("value")
    for key, value in sorted(data["sysctl"].items()):
        sysctl.add_row(key, value)
    console.print(sysctl)
    return console.file.getvalue()
