"""A fake lab guest for the runner's interruption tests: the chaos actions' commands change a state
file (which resolvers are dead or stopped, which probes run), the health check reads it, and the
connection can drop after a given command and stay unreachable until told otherwise.

The state lives in a JSON file so that a runner in another process (killed by SIGKILL in a test)
and the recovery in the test process see the same guest.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from chaos.ipvs_sampler import HEADER

UNIT_RE = re.compile(r"dnslab-resolver@(\w+)\.service")
RESOLVERS = {"rs1": "C0A8640B", "rs2": "C0A8640C", "rs3": "C0A8640D"}  # lab.toml's addresses, as in ip_vs


class FakeGuest:
    """Answers the runner's commands like the lab guest; see the module docstring."""

    def __init__(self, path: Path, *, drop_after: str | None = None, reachable: bool = True) -> None:
        self.path, self.drop_after, self.reachable = path, drop_after, reachable
        self.connected = True
        self._drop_next = False
        self.user, self.host, self.port = "root", "fake", 22
        if not path.exists():
            self.save({"dead": [], "stopped": [], "probes": [], "commands": []})

    # -- state ---------------------------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        return json.loads(self.path.read_text())

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.path)

    # -- the connection ------------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self.connected

    def close(self) -> None:
        self.connected = False

    def _open(self) -> None:
        if self.connected:
            return
        if not self.reachable:
            raise ConnectionRefusedError(111, "Connection refused")
        self.connected = True

    def run(self, cmd: str, **_: object) -> SimpleNamespace:
        self._open()
        if self._drop_next:
            self._drop_next, self.connected = False, False
            raise EOFError("the SSH connection closed")
        state = self.load()
        state["commands"].append(cmd)
        stdout = self._answer(cmd, state)
        self.save(state)
        if self.drop_after and self.drop_after in cmd:
            self._drop_next, self.drop_after = True, None
        return SimpleNamespace(exited=0, ok=True, stdout=stdout, stderr="")

    def put(self, *_: object) -> None:
        self._open()

    def get(self, remote: str, local: str) -> None:
        self._open()
        Path(local).write_text(HEADER if remote.endswith("ipvs.csv") else "")

    def sftp(self) -> None:
        self._open()

    # -- what the guest does -------------------------------------------------------------------------
    def _answer(self, cmd: str, state: dict[str, Any]) -> str:
        now = f"{time.time_ns()}\n"
        unit = UNIT_RE.search(cmd)
        name = unit.group(1) if unit else ""
        dead, stopped, probes = set(state["dead"]), set(state["stopped"]), set(state["probes"])
        out = ""
        if cmd == "date +%s%N":
            out = now
        elif "who.lab.test TXT" in cmd:  # the health check
            out = self._health(dead, stopped, probes)
        elif "setsid" in cmd:  # a probe starts
            probes.add(next((p for p in ("sampler", "notify") if p in cmd), "load"))
        elif ".pid" in cmd and "kill -" in cmd:  # probes are stopped (several in one command: stop_all)
            probes -= {p for p in ("load", "sampler", "notify") if f"{p}.pid" in cmd}
        elif name and "kill -KILL $pid" in cmd:
            dead.add(name)
            out = now + "4242\n"
        elif name and "kill -STOP $pid" in cmd:
            stopped.add(name)
            out = now + "4242\n"
        elif name and ("systemctl restart" in cmd or "kill -CONT" in cmd):  # start / restart / cont
            stopped.discard(name)
            if "restart" in cmd:
                dead.discard(name)
            out = now
        elif "date +%s%N" in cmd:
            out = now
        state["dead"], state["stopped"], state["probes"] = sorted(dead), sorted(stopped), sorted(probes)
        return out

    @staticmethod
    def _health(dead: set[str], stopped: set[str], probes: set[str]) -> str:
        lines = [f'{n} "{n}"' for n in RESOLVERS if n not in dead | stopped]
        lines += [f"@@fault resolver {n}: not stopped (SIGSTOP)" for n in sorted(stopped)]
        lines += [f"@@fault dnslab-resolver@{n}.service active" for n in sorted(dead)]
        lines += ["@@fault no guest probe left running"] if probes else []
        table = [f"{proto}  C0A86464:0035 rr" for proto in ("UDP", "TCP")]
        live = [f"  -> {addr}:0035      Masq    1      0          0"
                for n, addr in RESOLVERS.items() if n not in dead]
        ip_vs = "\n".join(line for vs in table for line in (vs, *live))
        return "\n".join(lines) + "\n@@ipvs\n" + ip_vs + "\n"
