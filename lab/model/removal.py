"""Removal on exit: the facts shared by rendering, deploy and the chaos probes.

A resolver's supervisor (its systemd unit, and the watcher it starts once the resolver is ready:
lab/guest/dnslab-exit-watch.py) writes 1 to `exit_file(name)` (paths: lab/model/layout.py) the
instant the resolver exits and 0 once it runs and is ready. Keepalived watches that file
(`track_file` + `FILE_CHECK` beside the regular check), so it removes the real server without
waiting for a check cycle and stays the only writer of the IPVS table. Keepalived reports every
real-server state change on `LVS_NOTIFY_FIFO` (`lvs_notify_fifo`), which chaos/notify_reader.py
turns into `detect` events. Pure: no I/O.
"""

from __future__ import annotations

import re

from lab.model.config import Lab
from lab.model.errors import ConfigError

# track_file and FILE_CHECK for real servers came with Keepalived 2.1.0 (2020).
MIN_KEEPALIVED = (2, 1, 0)
# `systemctl stop` first marks the resolver gone, then waits this long before SIGTERM so the
# queries already sent to it are answered (Keepalived removes it within tens of ms of the write).
DRAIN_S = 0.3


def track_file_name(name: str) -> str:
    """The keepalived.conf `track_file` block watching resolver `name`'s status file."""
    return f"dnslab_exit_{name.replace('-', '_')}"


def keepalived_version(text: str) -> tuple[int, ...] | None:
    """(2, 2, 7) from `keepalived --version` output ("Keepalived v2.2.7 (01/16,2022)"), else None."""
    match = re.search(r"Keepalived v(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(g) for g in match.groups()) if match else None


def require_support(lab: Lab, version_text: str) -> None:
    """LabError naming [check] removal_on_exit when the target's Keepalived cannot provide it."""
    if not lab.check.removal_on_exit:
        return
    version = keepalived_version(version_text)
    need = ".".join(map(str, MIN_KEEPALIVED))
    if version is None:
        found = " ".join(version_text.split())[:80] or "no output"
        raise ConfigError(f"{lab.source}: [check] removal_on_exit: needs Keepalived {need} or later "
                          f"(track_file, FILE_CHECK), but `keepalived --version` said: {found}; "
                          "install Keepalived or set removal_on_exit = false")
    if version < MIN_KEEPALIVED:
        have = ".".join(map(str, version))
        raise ConfigError(f"{lab.source}: [check] removal_on_exit: needs Keepalived {need} or later "
                          f"(track_file, FILE_CHECK); the lab host has {have}: upgrade it or set "
                          "removal_on_exit = false")
