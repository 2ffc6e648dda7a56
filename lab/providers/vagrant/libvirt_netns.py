"""libvirtd and virtlogd run by dnslab itself inside a host network namespace (the host has no systemd).

Everything libvirt starts (the management network's bridge and dnsmasq, qemu) inherits the
namespace, so libvirt's private addresses stay inside it. The daemons' PIDs are returned to the
caller, which stops them (and every other member of the namespace) by PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from lab.model.errors import ActionFailed, ConfigError, LabError
from lab.providers.vagrant.host_netns import HostNetns

URI = "qemu:///system"
PIDFILES = {"libvirtd": Path("/run/libvirtd.pid"), "virtlogd": Path("/run/virtlogd.pid")}
PACKAGES = "vagrant vagrant-libvirt libvirt-daemon-system dnsmasq-base iproute2"
TOOLS = ("vagrant", "libvirtd", "virtlogd", "virsh", "dnsmasq", "qemu-img", "ip")
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


def require_tools(tools: tuple[str, ...] = TOOLS) -> None:
    """A one-line LabError naming the Debian packages when a tool is missing."""
    path = f"{os.environ.get('PATH', '')}:{SBIN}"
    missing = [t for t in tools if shutil.which(t, path=path) is None]
    if missing:
        raise ConfigError(f"the vagrant provider needs {', '.join(missing)}: "
                          f"apt-get install {PACKAGES}")


def _running_elsewhere(name: str, netns: HostNetns) -> int | None:
    """The PID of a `name` daemon that runs outside our namespace, if any."""
    try:
        pid = int(PIDFILES[name].read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return None if _comm(pid) != name or pid in netns.member_pids() else pid


def start_daemons(netns: HostNetns, log_dir: Path, timeout_s: float = 60.0) -> dict[str, int]:
    """Start virtlogd and libvirtd inside `netns` (reusing ours when they run); return their PIDs."""
    pids: dict[str, int] = {}
    for name in ("virtlogd", "libvirtd"):
        other = _running_elsewhere(name, netns)
        if other is not None:
            raise LabError(f"{name} (PID {other}) already runs outside dnslab's namespace {netns.name}; "
                           f"stop it (dnslab runs its own {name} inside the namespace)")
        ours = [pid for pid in netns.member_pids() if _comm(pid) == name]
        if ours:
            pids[name] = ours[0]
            continue
        with (log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(netns.wrap([name]), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        pids[name] = proc.pid
    _wait_for_libvirt(netns, pids["libvirtd"], log_dir / "libvirtd.log", timeout_s)
    return pids


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _wait_for_libvirt(netns: HostNetns, pid: int, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise ActionFailed(f"libvirtd exited at start; see {log}: {' '.join(tail)}")
        if virsh(netns, "version", check=False).returncode == 0:
            return
        time.sleep(0.5)
    raise ActionFailed(f"libvirtd did not answer on {URI} within {timeout_s:.0f} s; see {log}")


def virsh(netns: HostNetns, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `virsh -c qemu:///system ARGS` inside the namespace."""
    result = subprocess.run(netns.wrap(["virsh", "-q", "-c", URI, *args]), capture_output=True,
                            text=True, timeout=120)
    if check and result.returncode != 0:
        raise ActionFailed(f"`virsh {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def names(netns: HostNetns, *args: str) -> list[str]:
    """The names a `virsh ... --name` listing prints."""
    return [line.strip() for line in virsh(netns, *args).stdout.splitlines() if line.strip()]


def remove_network(netns: HostNetns, name: str) -> None:
    """Stop and undefine the libvirt network `name` (absent is fine)."""
    if name in names(netns, "net-list", "--all", "--name"):
        virsh(netns, "net-destroy", name, check=False)
        virsh(netns, "net-undefine", name, check=False)


def forget_network_runtime(name: str, run_dir: Path = Path("/run/libvirt/network")) -> None:
    """Remove what libvirt leaves of a stopped network under /run (dnsmasq's pidfile, an empty ports dir)."""
    (run_dir / f"{name}.pid").unlink(missing_ok=True)
    for empty in (run_dir / name / "ports", run_dir / name):
        with contextlib.suppress(OSError):
            empty.rmdir()


def prune_volumes(netns: HostNetns, prefix: str, keep: str, pool: str = "default") -> list[str]:
    """Delete the pool's volumes named `prefix*` except `keep` (stale uploads of older boxes)."""
    if virsh(netns, "pool-info", pool, check=False).returncode != 0:
        return []
    stale = [v for v in _volumes(netns, pool) if v.startswith(prefix) and v != keep]
    for vol in stale:
        virsh(netns, "vol-delete", "--pool", pool, vol, check=False)
    return stale


def _volumes(netns: HostNetns, pool: str) -> list[str]:
    rows = virsh(netns, "vol-list", pool).stdout.splitlines()
    return [row.split()[0] for row in rows if row.strip()]
