"""Is nslookup too heavy as a health check? A probe of what each Keepalived check costs, run in the guest.

Measured in the director's namespace (where Keepalived's checks run):
- MISC_CHECK: the exact command Keepalived would exec for each tool (nslookup, dig), run N times in
  turn against the live resolvers; per check the wall time and the CPU time (user + sys) of the child
  and its descendants (`getrusage(RUSAGE_CHILDREN)` deltas), and whether it exited 0 (Keepalived's
  success test).
- DNS_CHECK: Keepalived queries in-process, so its cost is the checker process's own CPU over a window
  of W seconds (`/proc/PID/schedstat`, ns; `/proc/PID/stat` utime+stime, clock ticks) divided by the
  number of checks in the window, from the deployed keepalived.conf: check blocks x W / delay_loop.
- A bare in-process query: a UDP `who.lab.test TXT` packet built with struct, on a fresh socket per
  query: the floor any in-process check costs (wall and CPU per query).

This file runs standalone in the guest (stdlib only: `python3 check_cost.py SPEC_JSON` prints JSON);
`probe_check_cost(target)` uploads it, runs it there and adds the summary (`summarize`, pure). The
summary in words is reports/check_cost.py's, read from the probe's `probe_check_cost.json`.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import socket
import struct
import subprocess
import sys
import time
from typing import Any

KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
CHECKER_PIDFILE = "/run/dnslab-keepalived-checkers.pid"
QNAME, QTYPE_TXT = "who.lab.test", 16
MISC_TOOLS = ("nslookup", "dig")
SCENARIOS = {"1s": 1.0, "6s": 6.0}  # delay_loop of the reference scenarios, 3 resolvers each
SCENARIO_RESOLVERS = 3


# --- guest side: measurements (stdlib only) -------------------------------------------------------------

def dns_query(qname: str = QNAME, qtype: int = QTYPE_TXT) -> tuple[int, bytes]:
    """A DNS query packet (no recursion desired) and its ID."""
    qid = random.randrange(1 << 16)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in qname.rstrip(".").split("."))
    return qid, struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def in_process_query(address: str, port: int = 53, timeout_s: float = 1.0,
                     qname: str = QNAME) -> dict[str, Any]:
    """One UDP TXT query on a fresh socket, as an in-process checker does it: wall and CPU ms, and ok
    (an answer to it with NOERROR, DNS_CHECK's test)."""
    t0, c0 = time.perf_counter(), time.process_time()
    qid, packet = dns_query(qname)
    ok = False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect((address, port))
            sock.send(packet)
            reply = sock.recv(4096)
            rid, flags = struct.unpack("!HH", reply[:4])
            ok = rid == qid and flags & 0x8000 != 0 and flags & 0xF == 0
        except OSError:
            ok = False
    return {"wall_ms": (time.perf_counter() - t0) * 1e3, "cpu_ms": (time.process_time() - c0) * 1e3,
            "ok": ok}


def run_command(argv: list[str]) -> dict[str, Any]:
    """Run one check command as Keepalived does (exec, no shell): wall ms, child CPU ms, exit status."""
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    code = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"wall_ms": wall * 1e3, "cpu_ms": cpu * 1e3, "exit": code}


def misc_samples(commands: dict[str, list[str]], n: int) -> list[dict[str, Any]]:
    """Run `n` checks in turn over the resolvers' commands ({resolver: argv}), sequentially, after one
    unrecorded warm-up run."""
    names = sorted(commands)
    if not names:
        return []
    run_command(commands[names[0]])  # warms the page cache as Keepalived's repeated checks do
    out = []
    for i in range(n):
        name = names[i % len(names)]
        out.append({"resolver": name, **run_command(commands[name])})
    return out


def process_cpu(pid: int) -> dict[str, int]:
    """A process's CPU so far: utime/stime/cutime/cstime in clock ticks, and run time in ns (schedstat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    run_ns = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                run_ns += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended
    return {"utime": utime, "stime": stime, "cutime": cutime, "cstime": cstime, "run_ns": run_ns}


def cpu_window(pid: int, seconds: float) -> dict[str, Any]:
    """The CPU a process used over `seconds` (deltas of `process_cpu`), with the tick length."""
    a, t0 = process_cpu(pid), time.monotonic()
    time.sleep(seconds)
    b, t1 = process_cpu(pid), time.monotonic()
    delta = {k: b[k] - a[k] for k in a}
    return {"pid": pid, "window_s": t1 - t0, "tick_ms": 1000.0 / os.sysconf("SC_CLK_TCK"),
            "self_ticks": delta["utime"] + delta["stime"],
            "children_ticks": delta["cutime"] + delta["cstime"],
            "run_ms": delta["run_ns"] / 1e6}


def check_blocks(conf: str) -> dict[str, dict[str, float]]:
    """Per check type in a keepalived.conf: how many real-server check blocks, and checks per second
    (each block runs once per delay_loop of its virtual server)."""
    out: dict[str, dict[str, float]] = {}
    delay_loop = 60.0  # Keepalived's default
    for line in conf.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] == ["virtual_server"]:
            delay_loop = 60.0
        elif words[:1] == ["delay_loop"] and len(words) > 1:
            delay_loop = float(words[1])
        elif words and re.fullmatch(r"[A-Z]+_CHECK", words[0]):
            entry = out.setdefault(words[0], {"blocks": 0, "checks_per_s": 0.0})
            entry["blocks"] += 1
            entry["checks_per_s"] += 1.0 / delay_loop
    return out


def deployed_checks(conf_path: str, pidfile: str, window_s: float) -> dict[str, Any]:
    """The deployed keepalived.conf's check blocks and the checker process's CPU over `window_s`."""
    try:
        with open(conf_path) as f:
            blocks = check_blocks(f.read())
        with open(pidfile) as f:
            pid = int(f.read().split()[0])
        window = cpu_window(pid, window_s)
    except (OSError, ValueError, IndexError) as err:
        return {"measured": False, "reason": f"cannot read Keepalived's checker: {err}"}
    return {"measured": True, "conf": conf_path, "blocks": blocks, **window}


def run_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Everything the spec asks for, here: `n` in-process queries per resolver, `n` checks per MISC tool
    over the resolvers that answered them, and the Keepalived checker's CPU over `window_s`.

    spec: {"n": int, "window_s": float, "resolvers": {name: address},
           "misc": {tool: {resolver: argv}}, "keepalived_conf": path, "checker_pidfile": path}
    """
    n, resolvers = int(spec["n"]), spec["resolvers"]
    load_before = os.getloadavg()
    baseline = [{"resolver": name, **in_process_query(resolvers[name])}
                for _ in range(n) for name in sorted(resolvers)]
    live = sorted({s["resolver"] for s in baseline if s["ok"]})
    misc = {tool: misc_samples({r: argv for r, argv in cmds.items() if r in live}, n)
            for tool, cmds in spec["misc"].items()}
    deployed = (deployed_checks(spec.get("keepalived_conf", KEEPALIVED_CONF),
                                spec.get("checker_pidfile", CHECKER_PIDFILE), float(spec["window_s"]))
                if spec["window_s"] > 0 else {"measured": False, "reason": "window_s is 0"})
    return {"kernel": os.uname().release, "cpus": os.cpu_count(), "n": n, "live_resolvers": live,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "commands": spec["misc"],
            "in_process": baseline, "misc": misc, "keepalived": deployed}


# --- the summary (pure: plain dicts in and out) -------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between closest ranks; None when empty."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def core_share(cpu_ms: float | None, delay_loop: float, checks_per_round: int) -> float | None:
    """The share of one core that checks of `cpu_ms` each take when `checks_per_round` of them
    (resolvers x virtual servers) run every `delay_loop` seconds."""
    if cpu_ms is None:
        return None
    return cpu_ms * checks_per_round / (delay_loop * 1000.0)


def _shares(cpu_ms: float | None, scenarios: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    return {name: core_share(cpu_ms, s["delay_loop"], s["resolvers"] * s["virtual_servers"])
            for name, s in scenarios.items()}


def sample_stats(samples: list[dict[str, Any]], success_key: str = "exit") -> dict[str, Any]:
    """Median and p90 of wall and CPU ms per check, and the success ratio (exit 0, or `ok`)."""
    wall = [s["wall_ms"] for s in samples]
    cpu = [s["cpu_ms"] for s in samples]
    good = [s[success_key] == 0 if success_key == "exit" else bool(s[success_key]) for s in samples]
    return {"n": len(samples), "cpu_ms": percentile(cpu, 50), "cpu_ms_p90": percentile(cpu, 90),
            "wall_ms": percentile(wall, 50), "wall_ms_p90": percentile(wall, 90),
            "success": sum(good) / len(good) if good else None}


def deployed_check_cost(keepalived: dict[str, Any]) -> dict[str, Any]:
    """Keepalived's checker CPU per check of the one check type deployed, from a CPU window: its own
    CPU (`cpu_ms`; for MISC_CHECK that is the fork and the bookkeeping) and its reaped children's
    (`children_cpu_ms`: the MISC commands), over the checks the config schedules in the window.

    schedstat (ns) gives the figure; with clock ticks only, a window that read 0 ticks gives an upper
    bound (`cpu_ms_per_check_max`: one tick over the checks), never a fake zero."""
    if not keepalived.get("measured"):
        return {"measured": False, "reason": keepalived.get("reason", "not measured")}
    types = sorted(keepalived["blocks"])
    if len(types) != 1:
        return {"measured": False, "reason": f"the deployed keepalived.conf checks with "
                                             f"{', '.join(types) or 'nothing'}: one check type is needed"}
    kind = keepalived["blocks"][types[0]]
    checks = kind["checks_per_s"] * keepalived["window_s"]
    tick = keepalived["tick_ms"]
    out: dict[str, Any] = {"measured": True, "type": types[0], "checks": checks,
                           "window_s": keepalived["window_s"], "blocks": kind["blocks"],
                           "cpu_ms_ticks": keepalived["self_ticks"] * tick / checks,
                           "children_cpu_ms": keepalived["children_ticks"] * tick / checks}
    if keepalived.get("run_ms"):
        out.update(cpu_ms=keepalived["run_ms"] / checks, cpu_source="schedstat")
    elif keepalived["self_ticks"]:
        out.update(cpu_ms=out["cpu_ms_ticks"], cpu_source="ticks")
    else:
        out.update(cpu_ms=None, cpu_ms_per_check_max=tick / checks, cpu_source="ticks")
    return out


def dns_check_cost(keepalived: dict[str, Any]) -> dict[str, Any]:
    """`deployed_check_cost` when the deployed check is DNS_CHECK, else why it was not measured."""
    out = deployed_check_cost(keepalived)
    if out["measured"] and out["type"] != "DNS_CHECK":
        return {"measured": False, "reason": f"the deployed keepalived.conf checks with {out['type']}, "
                                             "not DNS_CHECK: deploy check.type = DNS_CHECK to measure it"}
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(raw: dict[str, Any], delay_loop: float, resolvers: int, virtual_servers: int) -> dict[str, Any]:
    """Per check kind: CPU and wall ms per check, success, and the share of one core it takes at the
    lab's delay_loop with its resolvers, and at 1 s and 6 s with 3 resolvers; ratios against DNS_CHECK
    (its upper bound gives a lower bound of the ratio) and against a bare in-process query (over the
    live resolvers)."""
    vs = virtual_servers
    scenarios = {"lab": {"delay_loop": delay_loop, "resolvers": resolvers, "virtual_servers": vs}}
    scenarios.update({name: {"delay_loop": d, "resolvers": SCENARIO_RESOLVERS, "virtual_servers": vs}
                      for name, d in SCENARIOS.items()})
    kinds: dict[str, dict[str, Any]] = {}
    for tool, samples in raw["misc"].items():
        stats = sample_stats(samples)
        kinds[tool] = {**stats, "core_share": _shares(stats["cpu_ms"], scenarios)}
    base = sample_stats([s for s in raw["in_process"] if s["resolver"] in raw["live_resolvers"]],
                        success_key="ok")
    kinds["in_process_query"] = {**base, "core_share": _shares(base["cpu_ms"], scenarios)}
    dns = dns_check_cost(raw["keepalived"])
    if dns["measured"]:
        bound = dns["cpu_ms"] is None
        dns["core_share" + ("_max" if bound else "")] = _shares(
            dns["cpu_ms_per_check_max"] if bound else dns["cpu_ms"], scenarios)
    kinds["dns_check"] = dns
    ratios: dict[str, float | None] = {}
    for tool in raw["misc"]:
        cpu = kinds[tool]["cpu_ms"]
        if dns.get("cpu_ms") is not None:
            ratios[f"{tool}/dns_check"] = _ratio(cpu, dns["cpu_ms"])
        elif dns.get("cpu_ms_per_check_max"):
            ratios[f"{tool}/dns_check_min"] = _ratio(cpu, dns["cpu_ms_per_check_max"])
        else:
            ratios[f"{tool}/dns_check"] = None
        ratios[f"{tool}/in_process_query"] = _ratio(cpu, base["cpu_ms"])
    return {"scenarios": scenarios, "kinds": kinds, "cpu_ratios": ratios,
            "deployed": deployed_check_cost(raw["keepalived"])}


# --- host side ----------------------------------------------------------------------------------------

def probe_spec(lab: Any, n: int, window_s: float) -> dict[str, Any]:
    """What the guest script runs for this lab: each MISC tool's exact Keepalived command per resolver."""
    import shlex

    from lab.model.parse import with_overrides
    from lab.render.files import misc_command

    misc = {}
    for tool in MISC_TOOLS:
        tool_lab = with_overrides(lab, {"check": {"type": "MISC_CHECK", "misc_tool": tool}})
        misc[tool] = {rs.name: shlex.split(misc_command(tool_lab, rs, "udp")) for rs in lab.resolvers}
    return {"n": n, "window_s": window_s, "resolvers": {rs.name: str(rs.address) for rs in lab.resolvers},
            "misc": misc, "keepalived_conf": KEEPALIVED_CONF, "checker_pidfile": CHECKER_PIDFILE}


def probe_check_cost(target: Any, n: int = 10, window_s: float = 10.0) -> dict[str, Any]:
    """Upload this file to the guest, run it in the director's namespace and return its JSON result
    with the lab's check settings and the summary. `n` checks per MISC tool (in turn over the live
    resolvers), `window_s` seconds of Keepalived's checker CPU: about 18 s under TCG with the defaults."""
    import shlex

    from chaos.probes import run_guest_script
    from lab.model.errors import LabError

    lab = target.lab
    if n < 1 or window_s < 0:
        raise LabError(f"check-cost probe: n must be >= 1 and window_s >= 0, got n={n}, window_s={window_s}")
    ns = lab.network.director_netns
    spec = json.dumps(probe_spec(lab, n, window_s))
    raw = run_guest_script(target.conn, __file__, shlex.quote(spec), netns=ns, what="check-cost probe")
    raw["netns"] = ns or "root"
    raw["lab_check"] = lab.as_dict()["check"]
    raw["summary"] = summarize(raw, lab.check.delay_loop, len(lab.resolvers), len(lab.ipvs.protocols))
    return raw


PROBES = {"probe_check_cost": probe_check_cost}


if __name__ == "__main__":
    print(json.dumps(run_probe(json.loads(sys.argv[1])), indent=1))
