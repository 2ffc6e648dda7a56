"""Probes: the in-guest IPVS sampler, Keepalived's log, lab health, and steady-state probes.

Steady-state probes (`PROBES`) are pure functions over a window of query records (a pandas
DataFrame with queries.csv's columns); the experiment's tolerance is a range their value must be in.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

import pandas as pd

from chaos import guest
from chaos.ipvs_sampler import parse as parse_ip_vs
from lab.model.config import Lab
from lab.model.errors import ActionFailed
from lab.model.layout import KEEPALIVED, LVS_NOTIFY_FIFO, in_ns
from lab.ssh import remote

SAMPLER = Path(__file__).resolve().parent / "ipvs_sampler.py"
NOTIFY_READER = Path(__file__).resolve().parent / "notify_reader.py"
DETECT_FILE = "detect.jsonl"
GUEST_PYTHON = "python3"
GUEST_RUNS = "/var/tmp/dnslab/runs"  # each run's working directory in the guest: records, samples, pidfiles
# Every guest probe a run starts (the load generator, the IPVS sampler, the notify reader), by pidfile.
PROBE_PIDFILES = " ".join(f"{GUEST_RUNS}/*/{name}" for name in ("load.pid", "sampler.pid", "notify.pid"))
SIGNALS = frozenset({"INT", "TERM", "KILL", "HUP"})  # what stop_all may send


# --- steady-state probes over query records ---------------------------------------------------------

def success_ratio(records: pd.DataFrame) -> float:
    """Share of queries answered `ok` (1.0 for an empty window: nothing failed)."""
    return float((records["outcome"] == "ok").mean()) if len(records) else 1.0


def latency_ms(records: pd.DataFrame, percentile: float = 99.0) -> float:
    """The given percentile of answer latency over `ok` queries (0 when there are none)."""
    ok = records.loc[records["outcome"] == "ok", "latency_ms"]
    return float(ok.quantile(percentile / 100.0)) if len(ok) else 0.0


def query_count(records: pd.DataFrame) -> float:
    """How many queries were sent in the window (catches a load that did not run)."""
    return float(len(records))


PROBES = {f.__name__: f for f in (success_ratio, latency_ms, query_count)}


def window(records: pd.DataFrame, start_ns: int, end_ns: int) -> pd.DataFrame:
    """Records sent in [start_ns, end_ns)."""
    t = records["t_send_ns"]
    return records[(t >= start_ns) & (t < end_ns)]


# --- guest scripts -----------------------------------------------------------------------------------

def run_guest_script(conn: Any, script: str, *args: str, netns: str | None = None,
                     what: str = "probe") -> Any:
    """Upload a stdlib-only Python file, run it as root in the guest (in `netns`) with `args` (each
    quoted), return its JSON output."""
    path = f"/var/tmp/dnslab-{Path(script).stem}.py"
    remote.put(conn, script, path)
    argv = ["ip", "netns", "exec", netns] if netns else []
    res = remote.run(conn, " ".join(shlex.quote(w) for w in [*argv, GUEST_PYTHON, path, *args]))
    if res.exited != 0:
        raise ActionFailed(f"{what} failed in the guest: {' '.join(res.stderr.split())[:300]}")
    return json.loads(res.stdout)


# --- background processes in the guest ---------------------------------------------------------------

def start_background(conn: Any, command: str, pidfile: str, log: str, netns: str | None = None) -> None:
    """Start `command` (a command line whose values the caller quoted) detached (setsid) in the guest,
    optionally in a netns; its PID goes to pidfile."""
    inner = f"echo $$ > {shlex.quote(pidfile)}; exec {command}"
    wrapped = in_ns(netns, f"sh -c {shlex.quote(inner)}")
    remote.run(conn, f"setsid {wrapped} > {shlex.quote(log)} 2>&1 < /dev/null &", check=True,
               what="starting a guest probe")


def stop_background(conn: Any, pidfile: str, sig: str = "TERM", timeout_s: float = 30.0,
                    owner: str | None = None) -> bool:
    """Signal the process in pidfile and wait for it to exit (SIGKILL after timeout_s); True when it
    exited in time. With `owner`, only a process whose command line contains that text (its run
    directory) is signalled (chaos/guest/stop.sh)."""
    return stop_all(conn, [(pidfile, sig, timeout_s)], owner)


def stop_all(conn: Any, stops: list[tuple[str, str, float]], owner: str | None = None) -> bool:
    """`stop_background` for several (pidfile, signal, timeout_s) at once, in one round trip; True when
    every process exited in time."""
    args: list[str] = []
    for pidfile, sig, timeout_s in stops:
        if sig not in SIGNALS:
            raise ActionFailed(f"stopping {pidfile}: not a signal name: {sig!r}")
        args += [pidfile, sig, str(int(timeout_s * 10))]
    return "late" not in remote.run_script(conn, guest.script("stop.sh"), owner or "", *args).stdout


def start_sampler(conn: Any, lab: Lab, remote_dir: str, hz: float = 20.0, max_s: float | None = None) -> str:
    """Upload the IPVS sampler and start it in the director's namespace; returns its pidfile. With
    `max_s` it stops by itself after that many seconds (nothing keeps sampling if the host side dies)."""
    script = f"{remote_dir}/ipvs_sampler.py"
    remote.put(conn, SAMPLER, script)
    pidfile = f"{remote_dir}/sampler.pid"
    limit = f" --max-s {float(max_s):g}" if max_s else ""
    start_background(conn, f"{GUEST_PYTHON} {shlex.quote(script)} {shlex.quote(remote_dir + '/ipvs.csv')} "
                     f"--hz {float(hz):g}{limit}",
                     pidfile, f"{remote_dir}/sampler.log", lab.network.director_netns)
    return pidfile


def start_notify_reader(conn: Any, lab: Lab, remote_dir: str, max_s: float | None = None) -> str:
    """Upload the notify reader and start it on Keepalived's lvs_notify_fifo; returns its pidfile.

    It appends detect events (and quorum notes) to `remote_dir`/detect.jsonl; with `max_s` it stops
    by itself after that many seconds, as the sampler does."""
    script = f"{remote_dir}/notify_reader.py"
    remote.put(conn, NOTIFY_READER, script)
    pidfile = f"{remote_dir}/notify.pid"
    names = " ".join(f"--name {shlex.quote(f'{r.real_server}={r.name}')}" for r in lab.resolvers)
    limit = f" --max-s {float(max_s):g}" if max_s else ""
    start_background(conn, f"{GUEST_PYTHON} {shlex.quote(script)} {LVS_NOTIFY_FIFO} "
                     f"{shlex.quote(f'{remote_dir}/{DETECT_FILE}')} {names}{limit}",
                     pidfile, f"{remote_dir}/notify.log")
    return pidfile


def read_detect_events(path: Path) -> list[dict[str, Any]]:
    """The events the notify reader wrote (none when the file is missing); a cut last line is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("t_ns"), int):
            out.append(event)
    return out


# --- logs and health ----------------------------------------------------------------------------------

def keepalived_log(conn: Any, start_ns: int, end_ns: int, unit: str = KEEPALIVED) -> str:
    """Keepalived's journal lines from start_ns to end_ns (guest clock), one per line."""
    since, until = start_ns // 10**9 - 1, end_ns // 10**9 + 2
    res = remote.run(conn, f"journalctl -u {shlex.quote(unit)} --since @{int(since)} --until @{int(until)} "
                     "-o short-iso-precise --no-pager")
    return res.stdout


def ipvs_table(conn: Any, lab: Lab) -> list[tuple[str, str, str, int, int, int]]:
    """The director's IPVS table now: (vip, proto, real_server, weight, active, inactive) rows."""
    ns = lab.network.director_netns
    cmd = in_ns(ns, "cat /proc/net/ip_vs")
    return parse_ip_vs(remote.run(conn, cmd).stdout)


def health(conn: Any, lab: Lab, own: str | None = None) -> dict[str, Any]:
    """Does every resolver answer `who.lab.test TXT` with its name, is the IPVS table whole, and is the
    lab in the state it should be (lab.ops.leftovers.health_checks: no netem qdisc, no stopped or dead
    resolver, no link down, Keepalived active, the lab's sysctls and IPVS timeouts; under compose
    lab.ops.compose_steps.compose_health_checks: no container paused or dead), with no guest
    probe of a run still running?

    One round trip (chaos/guest/health.sh): every resolver asked in parallel, then the checks and the
    director's /proc/net/ip_vs. `faults` names each check that failed. `own`: the asking run's guest
    directory, whose prestarted load (chaos.recording) does not count as a probe left running.
    """
    from lab.ops.compose_steps import compose_health_checks
    from lab.ops.leftovers import health_checks

    no_probes = remote.script_command(guest.script("no_probes.sh"), GUEST_RUNS, *([own] if own else []))
    state = compose_health_checks(lab) if lab.stack.runtime == "compose" else health_checks(lab)
    checks = [*state, (f"no guest probe left running under {GUEST_RUNS}", no_probes)]
    args = [lab.network.director_netns or "", *(w for r in lab.resolvers for w in (r.name, str(r.address))),
            "--", *(w for check in checks for w in check)]
    out = remote.run_script(conn, guest.script("health.sh"), *args).stdout
    said, _, ip_vs = out.partition("@@ipvs")
    faults = [line[len("@@fault "):] for line in said.splitlines() if line.startswith("@@fault ")]
    replies = dict((line.split() + [""])[:2] for line in said.splitlines()
                   if line.strip() and not line.startswith("@@fault "))
    answers = {r.name: replies.get(r.name, "").strip('"') == r.name for r in lab.resolvers}
    table = parse_ip_vs(ip_vs)
    vip = f"{lab.network.vip}:53"
    missing = [f"{proto}/{r.real_server}" for proto in lab.ipvs.protocols for r in lab.resolvers
               if not any(v == vip and p == proto and rs == r.real_server and w > 0
                          for v, p, rs, w, _, _ in table)]
    return {"ok": all(answers.values()) and not missing and not faults, "resolvers": answers,
            "ipvs_missing": missing, "faults": faults}


def describe_health(state: dict[str, Any]) -> str:
    """A health result as one line: what is wrong, or `healthy`."""
    silent = [name for name, ok in state.get("resolvers", {}).items() if not ok]
    faults = state.get("faults") or []
    parts = [f"{', '.join(silent)} did not answer" if silent else "",
             f"IPVS lacks {', '.join(state['ipvs_missing'])}" if state.get("ipvs_missing") else "",
             f"these checks failed: {'; '.join(faults)}" if faults else ""]
    return "; ".join(p for p in parts if p) or "healthy"


def wait_healthy(conn: Any, lab: Lab, timeout_s: float = 60.0, own: str | None = None) -> dict[str, Any]:
    """Poll `health` until it is ok or timeout_s passes; returns the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = health(conn, lab, own)
        if state["ok"] or time.monotonic() > deadline:
            return state
        time.sleep(1.0)
