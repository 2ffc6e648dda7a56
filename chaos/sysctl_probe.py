"""Are `net.ipv4.vs.*` sysctls per network namespace? A probe run in the lab guest (as root).

Three cases: the init namespace, a child netns owned by the init user namespace (`unshare --net`),
and a child netns owned by an unprivileged user namespace (`unshare --user --map-root-user --net`,
created as `nobody` when the kernel allows it). For each sysctl the init namespace lists, and each
case: does it exist, what is its value, is it writable, and does a write there change the value seen
in the other two cases (a leak)? Every value written is put back at once.

Kernels from 6.2 run IPVS's rate estimators in kthreads: a *change* of est_nice, run_estimation or
est_cpulist restarts them, and under TCG that held the estimator lock for minutes (every later read
waited). On such a kernel (it has est_nice) those are written with their own value (writable, no
restart: the kernel only restarts on a change) and est_cpulist not at all; their leak is not tested
(`not_changed` says why). Every request to a namespace's agent has a deadline.

This file runs standalone in the guest (stdlib only: `python3 sysctl_probe.py` prints JSON);
`probe_sysctl_namespaces(target)` uploads it, runs it and returns the parsed result.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Any

VS_DIR = "/proc/sys/net/ipv4/vs"
CASES = ("init", "child_init_userns", "child_unpriv_userns")
ESTIMATOR_SYSCTLS = ("est_cpulist", "est_nice", "run_estimation")  # a change restarts the kthreads
ASK_TIMEOUT_S = 30.0
NOT_CHANGED = ("not changed: on this kernel a change restarts IPVS's estimator kthreads, which held the "
               "estimator lock for minutes under TCG")

AGENT = r"""
import json, os, sys
d = sys.argv[1]
for line in sys.stdin:
    req = json.loads(line)
    path = os.path.join(d, req["name"])
    if req["op"] == "read":
        try:
            with open(path) as f:
                out = {"exists": True, "value": " ".join(f.read().split())}
        except FileNotFoundError:
            out = {"exists": False, "value": None}
        except OSError as e:
            out = {"exists": True, "value": None, "error": e.strerror}
    else:
        try:
            with open(path, "w") as f:
                f.write(req["value"] + "\n")
            out = {"ok": True}
        except OSError as e:
            out = {"ok": False, "error": e.strerror}
    print(json.dumps(out), flush=True)
"""


class Agent:
    """A python process inside one namespace case that reads and writes sysctls on request."""

    def __init__(self, prefix: list[str], directory: str) -> None:
        self.proc = subprocess.Popen(prefix + ["python3", "-c", AGENT, directory], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def ask(self, timeout_s: float = ASK_TIMEOUT_S, **req: str) -> dict[str, Any]:
        """The agent's answer; TimeoutError when it gives none within timeout_s (a write stuck in the
        kernel)."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            raise TimeoutError(f"{req['op']} of net.ipv4.vs.{req['name']} did not return within "
                               f"{timeout_s:g} s")
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # stuck in the kernel: killed, it exits once the call returns
            self.proc.kill()


def other_value(value: str) -> str:
    """A different valid-looking value: 0 <-> 1 for flags, the first field + 1 otherwise."""
    fields = value.split()
    if not fields or not fields[0].lstrip("-").isdigit():
        return value
    first = int(fields[0])
    new = 1 - first if first in (0, 1) and len(fields) == 1 else first + 1
    return " ".join([str(new)] + fields[1:])


def _holder(cmd: list[str]) -> subprocess.Popen[bytes]:
    """A sleeping process that keeps a new namespace alive; nsenter joins it by PID."""
    return subprocess.Popen(cmd + ["sleep", "600"], stdin=subprocess.DEVNULL)


def run_probe(directory: str = VS_DIR, names: list[str] | None = None) -> dict[str, Any]:
    """Run the probe here (root in the init namespaces) over the sysctls in `directory`."""
    names = sorted(names or os.listdir(directory))
    kthreads = os.path.exists(os.path.join(directory, "est_nice"))
    child = _holder(["unshare", "--net"])
    unpriv_as = "nobody"
    unpriv = _holder(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                      "unshare", "--user", "--map-root-user", "--net"])
    time.sleep(0.5)
    if unpriv.poll() is not None:  # unprivileged user namespaces disabled: create it as root
        unpriv_as = "root"
        unpriv = _holder(["unshare", "--user", "--map-root-user", "--net"])
        time.sleep(0.5)
    agents = {
        "init": Agent([], directory),
        "child_init_userns": Agent(["nsenter", "-t", str(child.pid), "-n"], directory),
        "child_unpriv_userns": Agent(["nsenter", "-t", str(unpriv.pid), "-U", "-n"], directory),
    }
    result: dict[str, dict[str, Any]] = {}
    try:
        for name in names:
            before = {c: agents[c].ask(op="read", name=name) for c in CASES}
            entry: dict[str, Any] = {}
            for case in CASES:
                info = dict(before[case])
                if kthreads and name in ESTIMATOR_SYSCTLS:
                    info.update(_unchanged(agents[case], name, info))
                elif info["exists"] and info.get("value") is not None:
                    new = other_value(info["value"])
                    wrote = agents[case].ask(op="write", name=name, value=new)
                    info["leak_tested"] = wrote["ok"]
                    if not wrote["ok"] and wrote.get("error") == "Invalid argument":
                        wrote = agents[case].ask(op="write", name=name, value=info["value"])
                    info["writable"] = wrote["ok"]
                    if not wrote["ok"]:
                        info["write_error"] = wrote.get("error")
                    after = {c: agents[c].ask(op="read", name=name) for c in CASES}
                    info["write_took"] = info["leak_tested"] and after[case].get("value") == new
                    info["leaks_to"] = [c for c in CASES if c != case
                                        and after[c].get("value") != before[c].get("value")]
                    if wrote["ok"]:
                        agents[case].ask(op="write", name=name, value=info["value"])
                else:
                    info.update(writable=False, leak_tested=False, write_took=False, leaks_to=[])
                entry[case] = info
            result[name] = entry
    finally:
        for agent in agents.values():
            agent.close()
        for holder in (child, unpriv):
            holder.kill()
            holder.wait()
    return {"kernel": os.uname().release, "directory": directory, "unprivileged_userns_created_as": unpriv_as,
            "cases": list(CASES), "sysctls": result, "summary": summarize(result)}


def _unchanged(agent: Agent, name: str, info: dict[str, Any]) -> dict[str, Any]:
    """An estimator sysctl on a kernel with estimator kthreads: its own value written back (est_nice,
    run_estimation: writable, nothing restarts), est_cpulist not written; no leak test."""
    out: dict[str, Any] = {"leak_tested": False, "write_took": False, "leaks_to": [],
                           "not_changed": NOT_CHANGED}
    if not info["exists"] or info.get("value") is None or name == "est_cpulist":
        return {**out, "writable": None if info["exists"] else False}
    wrote = agent.ask(op="write", name=name, value=info["value"])
    return {**out, "writable": wrote["ok"], **({} if wrote["ok"] else {"write_error": wrote.get("error")})}


def summarize(sysctls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per case: how many exist, how many are writable, and which writes leaked elsewhere."""
    unchanged = sorted(n for n, s in sysctls.items() if s[CASES[0]].get("not_changed"))
    out: dict[str, Any] = {"total_in_init": len(sysctls), "not_changed": unchanged}
    for case in CASES:
        rows = [s[case] for s in sysctls.values()]
        out[case] = {
            "exist": sum(r["exists"] for r in rows),
            "writable": sum(bool(r.get("writable")) for r in rows),
            "leaking": sorted(n for n, s in sysctls.items() if s[case].get("leaks_to")),
        }
    return out


# --- host side ----------------------------------------------------------------------------------------

def probe_sysctl_namespaces(target: Any) -> dict[str, Any]:
    """Upload this file to the guest, run it as root there and return its JSON result."""
    from chaos.probes import run_guest_script

    return run_guest_script(target.conn, __file__, what="sysctl probe")


PROBES = {"probe_sysctl_namespaces": probe_sysctl_namespaces}


if __name__ == "__main__":
    print(json.dumps(run_probe(*sys.argv[1:2], names=sys.argv[2:] or None), indent=1))
