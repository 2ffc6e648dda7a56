"""What the guest runs: its Debian release and the versions of the kernel, Keepalived, Unbound and
ipvsadm, read in one SSH round trip (`guest_versions`) and parsed by a pure function (`parse_versions`).

Every run records them in meta.json (`guest`), so each report can say which release answered.
"""

from __future__ import annotations

import re

from lab.model.config import Lab
from lab.model.errors import ConfigError
from lab.ssh import remote

# One `key=first line of the tool's output` per line; a tool that is missing gives an empty value.
PROBE = (
    "echo release=$(. /etc/os-release 2>/dev/null; echo \"$VERSION_CODENAME\"); "
    "echo kernel=$(uname -r); "
    "echo keepalived=$(keepalived --version 2>&1 | head -n 1); "
    "echo unbound=$(unbound -V 2>&1 | head -n 1); "
    "echo ipvsadm=$(ipvsadm --version 2>&1 | head -n 1)"
)
KEYS = ("release", "kernel", "keepalived", "unbound", "ipvsadm")
_VERSION_RE = re.compile(r"v?(\d+(?:\.\d+)+)")


def version_of(line: str) -> str:
    """The first dotted version number in a tool's banner ('Keepalived v2.3.3 (..)' -> '2.3.3'),
    '' when there is none."""
    match = _VERSION_RE.search(line)
    return match.group(1) if match else ""


def parse_versions(text: str) -> dict[str, str]:
    """PROBE's output as {release, kernel, keepalived, unbound, ipvsadm}: the codename and `uname -r`
    as printed, the tools' bare version numbers; '' for what the guest did not say."""
    raw = dict.fromkeys(KEYS, "")
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in raw:
            raw[key] = value.strip()
    return {key: raw[key] if key in ("release", "kernel") else version_of(raw[key]) for key in KEYS}


def guest_versions(conn) -> dict[str, str]:
    """The guest's release and the versions of its kernel, Keepalived, Unbound and ipvsadm."""
    return parse_versions(remote.run(conn, PROBE).stdout)


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
