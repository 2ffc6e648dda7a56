"""A named network namespace on the host that holds everything of one lab component.

The vagrant provider runs libvirtd, virtlogd, dnsmasq, qemu and every `vagrant` command in one, so
libvirt's bridge and private addresses never touch the host's own network. Membership is exact: a
process belongs to the namespace when its /proc/PID/ns/net is the namespace's inode, so stopping
"everything of the lab" is a list of PIDs, never a match on names.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lab.model.errors import ActionFailed

NETNS_DIR = Path("/run/netns")


@dataclass(frozen=True)
class HostNetns:
    """The network namespace `name` (a file under /run/netns once created)."""

    name: str

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    def exists(self) -> bool:
        return self.path.exists()

    def create(self) -> None:
        """Create the namespace (idempotent) with only its loopback up."""
        if not self.exists():
            _ip("netns", "add", self.name)
        _ip("-n", self.name, "link", "set", "lo", "up")

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace (`ip netns exec` execs it: the PID stays the command's)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def member_pids(self) -> list[int]:
        """PIDs of every process whose network namespace is this one."""
        if not self.exists():
            return []
        inode = self.path.stat().st_ino
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if (entry / "ns" / "net").stat().st_ino == inode:
                    pids.append(int(entry.name))
            except OSError:
                continue
        return sorted(pids)

    def stop_members(self, grace_s: float = 10.0) -> list[int]:
        """SIGTERM every member, SIGKILL what is left after `grace_s`; return the PIDs that were stopped."""
        pids = self.member_pids()
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and self.member_pids():
            time.sleep(0.1)
        for pid in self.member_pids():
            _signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.member_pids():
            time.sleep(0.1)
        left = self.member_pids()
        if left:
            raise ActionFailed(f"network namespace {self.name}: processes {left} survived SIGKILL")
        return pids

    def delete(self) -> None:
        """Stop every member and remove the namespace (idempotent)."""
        if self.exists():
            self.stop_members()
            _ip("netns", "delete", self.name)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        detail = result.stderr.strip() or f"exit {result.returncode}"
        raise ActionFailed(f"`ip {' '.join(args)}` failed: {detail} (needs root and iproute2)")
