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
import shlex
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from chaos.ipvs_sampler import HEADER

UNIT_RE = re.compile(r"dnslab-resolver@(\w+)\.service")
ACTIONS_SH = "actions.sh"
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
        dead, stopped, probes = set(state["dead"]), set(state["stopped"]), set(state["probes"])
        action, args = action_call(cmd)
        unit = UNIT_RE.fullmatch(args[1]) if action and len(args) > 1 else None
        name = unit.group(1) if unit else ""
        out = ""
        if cmd == "date +%s%N":
            out = now
        elif action == "signal" and name and args[2] in ("KILL", "STOP"):
            (dead if args[2] == "KILL" else stopped).add(name)
            out = now + "4242\n"
        elif action in ("restart", "ensure", "cont") and (name or UNIT_RE.fullmatch(args[0])):
            name = name or UNIT_RE.fullmatch(args[0]).group(1)  # type: ignore[union-attr]
            stopped.discard(name)
            if action != "cont":
                dead.discard(name)
            out = now
        elif action is not None:
            out = now
        elif "who.lab.test TXT" in cmd:  # the health check
            out = self._health(dead, stopped, probes)
        elif "setsid" in cmd:  # a probe starts
            probes.add(next((p for p in ("sampler", "notify") if p in cmd), "load"))
        elif ".pid" in cmd and "kill -" in cmd:  # probes are stopped (several in one command: stop.sh)
            probes -= {p for p in ("load", "sampler", "notify") if f"{p}.pid" in cmd}
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


def action_call(cmd: str) -> tuple[str | None, list[str]]:
    """(the action, its arguments) when `cmd` runs chaos/guest/actions.sh (lab.remote.script_command),
    else (None, [])."""
    if ACTIONS_SH not in cmd:
        return None, []
    words = shlex.split(cmd)
    at = words.index(ACTIONS_SH) if ACTIONS_SH in words else -1
    if at < 2 or words[at - 2:at - 1] != ["-c"]:
        return None, []
    return words[at + 1], words[at + 2:]
