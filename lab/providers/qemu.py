"""The built-in provider: the lab image booted by qemu on this machine.

An overlay of the cached image in state_dir()/vm/, direct-kernel boot, restricted user networking with
SSH forwarded from a free 127.0.0.1 port, the per-lab SSH key handed to the guest through fw_cfg.
KVM when it can run the image (probed once, verdict cached), else TCG. Stopped by PID, after checking
that the PID is our qemu on our overlay.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from lab.image.accel import QEMU, choose_accel
from lab.image.build import ImageArtifacts
from lab.image.recipe import KERNEL_CMDLINE
from lab.image.steps import console, last_lines, require_tools
from lab.local.state import ensure_key, state_dir
from lab.model.config import Lab
from lab.model.errors import ActionFailed, GuestUnreachable, LabError
from lab.providers.base import not_up, ssh_problem
from lab.ssh import hostkeys
from lab.ssh.endpoint import Endpoint, connect

TOOLS = {QEMU: "qemu-system-x86", "qemu-img": "qemu-utils", "ssh-keygen": "openssh-client"}


def qemu_argv(*, image: ImageArtifacts, overlay: Path, port: int, pubkey: Path, serial: Path,
              pidfile: Path, accel: str, cpus: int, memory_mib: int, grub: bool = False) -> list[str]:
    """The qemu command line of the lab VM (pure). Direct-kernel boot, or GRUB from the disk."""
    kvm = accel == "kvm"
    cpu = ["-accel", "kvm", "-cpu", "host"] if kvm else ["-accel", "tcg,thread=multi", "-cpu", "max"]
    kernel = ["-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", KERNEL_CMDLINE]
    return [
        QEMU, "-name", "dnslab", "-machine", "q35", *cpu, "-smp", str(cpus), "-m", str(memory_mib),
        "-nodefaults", "-display", "none",
        "-drive", f"file={overlay},if=virtio,format=qcow2,discard=unmap",
        *([] if grub else kernel),
        "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=n0",
        "-device", "virtio-rng-pci",
        "-fw_cfg", f"name=opt/dnslab/authorized_keys,file={pubkey}",
        "-serial", f"file:{serial}",
        "-pidfile", str(pidfile), "-daemonize",
    ]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_overlay(image: ImageArtifacts, overlay: Path) -> None:
    """A fresh copy-on-write disk over the cached image (which is never written)."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.qcow2),
                    str(overlay)], check=True, stdin=subprocess.DEVNULL)


class QemuProvider:
    """The lab VM under qemu, with its state in state_dir()/vm/."""

    name = "qemu"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.dir = state_dir() / "vm"
        self.overlay = self.dir / "overlay.qcow2"
        self.pidfile = self.dir / "qemu.pid"
        self.serial = self.dir / "serial.log"
        self.endpoint_file = self.dir / "endpoint.json"
        self.vm_file = self.dir / "vm.json"

    # -- state ---------------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The PID of our running qemu (its cmdline names our overlay), else None."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        ours = cmdline and cmdline[0].endswith(QEMU.encode()) and any(
            str(self.overlay).encode() in arg for arg in cmdline)
        return pid if ours else None

    def endpoint(self) -> Endpoint:
        pid = self.pid()
        if pid is None:
            raise GuestUnreachable(not_up(self.name, f"no qemu of {self.overlay}"))
        if not self.endpoint_file.exists():
            raise LabError(f"lab is still booting (qemu pid {pid}); wait for `fab up` to finish")
        return Endpoint.from_json(self.endpoint_file.read_text())

    # -- up / down -----------------------------------------------------------------------------
    def up(self) -> Endpoint:
        pid = self.pid()
        if pid is not None:
            port = json.loads(self.vm_file.read_text())["port"]
            raise LabError(f"lab is already up (qemu pid {pid}, ssh on 127.0.0.1:{port}); "
                           "`fab down` stops it")
        from lab.image.build import build

        require_tools(TOOLS, "the qemu provider")
        image = build(self.lab)
        self._clear()
        self.dir.mkdir(parents=True, exist_ok=True)
        key = ensure_key()
        hostkeys.forget(hostkeys.ALIAS)  # a fresh overlay: the VM makes new host keys at boot
        accel = choose_accel(self.lab.vm.accel, image.kernel)
        create_overlay(image, self.overlay)
        port = free_port()
        argv = qemu_argv(image=image, overlay=self.overlay, port=port, pubkey=Path(f"{key}.pub"),
                         serial=self.serial, pidfile=self.pidfile, accel=accel, cpus=self.lab.vm.cpus,
                         memory_mib=self.lab.vm.memory_mib)
        started = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
                                 start_new_session=True)
        if started.returncode != 0:
            self._clear()
            err = " ".join(started.stderr.split())[:300]
            raise ActionFailed(f"qemu failed to start (exit {started.returncode}): {err}")
        endpoint = Endpoint(host="127.0.0.1", port=port, user="root", key=str(key),
                            known_hosts=(str(hostkeys.known_hosts_path()),), host_key_alias=hostkeys.ALIAS)
        self.vm_file.write_text(json.dumps({"pid": self.pid(), "port": port, "accel": accel,
                                            "image": str(image.qcow2), "image_hash": image.hash,
                                            "argv": argv}, indent=2) + "\n")
        try:
            self._wait_for_ssh(endpoint, accel)
        except KeyboardInterrupt:
            self.down()
            raise
        self.endpoint_file.write_text(endpoint.to_json() + "\n")
        return endpoint

    def _wait_for_ssh(self, endpoint: Endpoint, accel: str) -> None:
        start = time.monotonic()
        deadline = start + self.lab.vm.boot_timeout_s
        problem = "not tried"
        with console.status("booting") as status:
            while time.monotonic() < deadline:
                if self.pid() is None:
                    self._fail(f"qemu exited while booting ({accel})")
                tail = (last_lines(self.serial) or [""])[0][:80]
                if "end Kernel panic" in tail:  # a panicked guest never answers: say so at once
                    self._fail(f"the guest kernel panicked while booting ({accel})")
                status.update(f"[bold]booting the lab VM[/] ({accel}) {time.monotonic() - start:4.0f} s  "
                              f"[dim]{escape(tail)}[/]")
                # The first key the guest presents is pinned, only through the port our qemu holds.
                ours = (pid := self.pid()) is not None and holds_port(pid, endpoint.port)
                problem = ssh_problem(endpoint, accept_new_host_key=ours) if ours else \
                    f"127.0.0.1:{endpoint.port} is not qemu's (yet)"
                if problem is None:
                    console.print(f"[green]✓[/] lab VM answers SSH on 127.0.0.1:{endpoint.port} "
                                  f"[dim]({time.monotonic() - start:.0f} s, {accel})[/]")
                    return
                time.sleep(1.0)
        self._fail(f"the lab VM did not answer SSH within {self.lab.vm.boot_timeout_s} s ({accel}; "
                   f"last SSH attempt: {problem})")

    def _fail(self, problem: str) -> None:
        tail = " | ".join(last_lines(self.serial, 3)) or "(empty)"
        self.down()
        raise ActionFailed(f"{problem}; serial log: {self.serial}; last lines: {tail}")

    def down(self) -> None:
        pid = self.pid()
        if pid is not None:
            stop_pid(pid)
        self._clear()
        hostkeys.forget(hostkeys.ALIAS)

    def _clear(self) -> None:
        for path in (self.pidfile, self.endpoint_file, self.vm_file, self.overlay):
            path.unlink(missing_ok=True)

    # -- info ------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        endpoint = self.endpoint()
        vm = json.loads(self.vm_file.read_text())
        with connect(endpoint) as conn:
            kernel = conn.run("uname -r", hide=True, in_stream=False).stdout.strip()
        return {"provider": self.name, "endpoint": f"{endpoint.user}@{endpoint.host}:{endpoint.port}",
                "image": vm["image"], "kernel": kernel, "accel": vm["accel"], "pid": vm["pid"]}


def holds_port(pid: int, port: int) -> bool:
    """True when process `pid` owns the socket listening on 127.0.0.1:port (so nobody else answers there)."""
    want = f"0100007F:{port:04X}"
    try:
        rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        sockets = {f"socket:[{r[9]}]" for r in rows if len(r) > 9 and r[1] == want and r[3] == "0A"}
        return any(os.readlink(fd) in sockets for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def _gone(pid: int) -> bool:
    """True when the process no longer exists or is a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.1)
    return False


def stop_pid(pid: int) -> None:
    """SIGTERM, up to 10 s to exit, then SIGKILL (the caller has checked the PID is its qemu)."""
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, 10.0):
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)
