"""What the guest runs: its Debian release and the versions of the kernel, Keepalived, Unbound and
ipvsadm (and the load generator's Locust), read in one SSH round trip (`guest_banners`, once per
connection) and parsed by pure functions (`parse_banners`, `parse_versions`).

Every run records them in meta.json (`guest`, `tools`), so each report can say which release answered.
"""

from __future__ import annotations

import contextlib
import re
import weakref
from typing import Any

from lab.model.config import Lab
from lab.model.errors import ConfigError
from lab.model.layout import VENV
from lab.ssh import remote

# One `key=first line of the tool's output` per line; a tool that is missing gives an empty value.
PROBE = (
    "echo release=$(. /etc/os-release 2>/dev/null; echo \"$VERSION_CODENAME\"); "
    "echo kernel=$(uname -r); "
    "echo keepalived=$(keepalived --version 2>&1 | head -n 1); "
    "echo unbound=$(unbound -V 2>&1 | head -n 1); "
    "echo ipvsadm=$(ipvsadm --version 2>&1 | head -n 1); "
    f"echo locust=$(ls -d {VENV}/lib/python3*/site-packages/locust-*.dist-info 2>/dev/null | head -n 1)"
)
KEYS = ("release", "kernel", "keepalived", "unbound", "ipvsadm")
TOOLS = ("unbound", "keepalived", "ipvsadm", "locust")
_LOCUST_RE = re.compile(r"locust-([^/]+)\.dist-info$")
_read: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_VERSION_RE = re.compile(r"v?(\d+(?:\.\d+)+)")


def version_of(line: str) -> str:
    """The first dotted version number in a tool's banner ('Keepalived v2.3.3 (..)' -> '2.3.3'),
    '' when there is none."""
    match = _VERSION_RE.search(line)
    return match.group(1) if match else ""


def parse_banners(text: str) -> dict[str, str]:
    """PROBE's output as {key: the line the guest printed}, '' for what it did not say; Locust's
    line is its dist-info directory, given as `locust VERSION`."""
    raw = dict.fromkeys((*KEYS, "locust"), "")
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in raw:
            raw[key] = value.strip()
    match = _LOCUST_RE.search(raw["locust"])
    raw["locust"] = f"locust {match.group(1)}" if match else ""
    return raw


def parse_versions(text: str) -> dict[str, str]:
    """PROBE's output as {release, kernel, keepalived, unbound, ipvsadm}: the codename and `uname -r`
    as printed, the tools' bare version numbers; '' for what the guest did not say."""
    raw = parse_banners(text)
    return {key: raw[key] if key in ("release", "kernel") else version_of(raw[key]) for key in KEYS}


def guest_banners(conn: Any) -> str:
    """PROBE's output for the guest behind `conn`: read once per connection (a run of a matrix
    reuses its first run's reading; another guest comes with another connection)."""
    key = getattr(conn, "conn", conn)  # chaos.link.Link wraps the Fabric connection
    try:
        return _read[key]
    except (KeyError, TypeError):
        text = remote.run(conn, PROBE, what="reading the guest's versions").stdout
    with contextlib.suppress(TypeError):  # not weak-referenceable: read each time
        _read[key] = text
    return text


def guest_versions(conn: Any) -> dict[str, str]:
    """The guest's release and the versions of its kernel, Keepalived, Unbound and ipvsadm."""
    return parse_versions(guest_banners(conn))


def tool_banners(conn: Any) -> dict[str, str]:
    """The first line each tool prints about its version (meta.json `tools`), '' for a missing one."""
    raw = parse_banners(guest_banners(conn))
    return {tool: raw[tool] for tool in TOOLS}


def describe(versions: dict[str, str] | None) -> str:
    """One line for reports: 'Debian trixie · kernel 6.12.x · Keepalived 2.3.3 · Unbound 1.26.2 ·
    ipvsadm 1.31'; '' when nothing is known (a run recorded before meta had them)."""
    if not versions:
        return ""
    parts = [f"Debian {versions['release']}" if versions.get("release") else ""]
    labels = (("kernel", "kernel"), ("keepalived", "Keepalived"), ("unbound", "Unbound"),
              ("ipvsadm", "ipvsadm"))
    parts += [f"{label} {versions[key]}" for key, label in labels if versions.get(key)]
    return " · ".join(p for p in parts if p)


def require_release(conn, lab: Lab) -> None:
    """A one-line LabError when the lab VM runs another Debian release than the lab file's [vm]
    release (a VM booted from another lab file); a real host (the ssh provider) runs what it runs."""
    if lab.vm.provider == "ssh":
        return
    running = remote.run(conn, ". /etc/os-release 2>/dev/null; echo \"$VERSION_CODENAME\"").stdout.strip()
    if running and running != lab.vm.release:
        raise ConfigError(f"{lab.source}: [vm] release: the lab VM runs {running}, not {lab.vm.release}; "
                       f"bring it down (`fab down`) and up with this lab file (`fab up --lab {lab.source}`)")
