"""The vagrant provider: `vagrant up` with vagrant-libvirt, all of it inside one host network namespace.

Here libvirtd, virtlogd, libvirt's dnsmasq, qemu and every `vagrant` command run in the namespace
`dnslab-vagrant`; the VM's private address exists only there. The host reaches the VM's SSH through
a forwarder (lab.providers.vagrant.netns_forward) listening on 127.0.0.1, so the Endpoint is an
ordinary loopback one.
Every task logs in as root with the lab's own key (the Vagrantfile's provisioner authorises it).
`down()` destroys the VM, stops every process of the namespace by PID and deletes the namespace.

Where libvirt or VirtualBox can be used directly, a plain `vagrant up` in the repo root works too:
the same provider then finds that machine (lab.providers.vagrant.repo) when it has none of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import vagrant
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from lab.local import state
from lab.local.state import ensure_key, lab_key
from lab.model.config import REPO_ROOT, Lab
from lab.model.errors import ActionFailed, GuestUnreachable, LabError
from lab.providers.base import not_up
from lab.providers.vagrant import box, libvirt_netns
from lab.providers.vagrant import repo as vagrant_repo
from lab.providers.vagrant.host_netns import HostNetns
from lab.providers.vagrant.repo import pinned_endpoint
from lab.ssh.endpoint import Endpoint, connect
from lab.ssh.hostkeys import HostKeyError

NETNS = "dnslab-vagrant"
NETWORK = "dnslab-vagrant"  # Vagrantfile: management_network_name
DOMAIN = "dnslab_default"  # Vagrantfile: default_prefix "dnslab_" + machine "default"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BOX_VOLUME_PREFIX = box.BOX_NAME.replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image_"


class NetnsVagrant(vagrant.Vagrant):
    """python-vagrant, with every vagrant command run inside the namespace."""

    def __init__(self, netns: HostNetns, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.netns = netns

    def _make_vagrant_command(self, args: list[str | None]) -> list[str]:
        return self.netns.wrap(super()._make_vagrant_command(args))


class VagrantProvider:
    """The lab VM as a Vagrant (libvirt) machine in the host network namespace `dnslab-vagrant`."""

    name = "vagrant"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.netns = HostNetns(NETNS)
        self.dir = state.sub("vagrant")
        self.state_file = self.dir / "state.json"
        self.serial_log = self.dir / "serial.log"
        self.up_log = self.dir / "vagrant-up.log"

    # -- the Provider protocol -------------------------------------------------------------------

    def up(self) -> Endpoint:
        """Image and box, namespace, libvirtd, `vagrant up --provider=libvirt`, SSH; the Endpoint."""
        libvirt_netns.require_tools()
        with self._lock():
            if self.netns.exists():  # one vagrant lab per host: the namespace, domain and network are global
                raise LabError(f"the lab is already up (vagrant, namespace {NETNS}); "
                               "`fab down --provider vagrant` stops it")
            machine = vagrant_repo.find()
            if machine is not None:
                machine.check_box()
                raise LabError(f"{machine.where()} exists (made by `vagrant up`): the tasks use it as it "
                               "is; `vagrant destroy` removes it")
            self.state_file.unlink(missing_ok=True)
            ensure_key()
            artifacts = _image(self.lab)
            started = time.monotonic()
            try:
                self.netns.create()
                daemons = libvirt_netns.start_daemons(self.netns, self.dir)
                self._forget_stale_vm()
                self._vagrant_up()
                endpoint, forwarder = self._forward_ssh()
                kernel = _wait_for_ssh(endpoint, timeout_s=60)
            except BaseException:
                self._teardown()
                raise
            seconds = time.monotonic() - started
            self._record({"endpoint": json.loads(endpoint.to_json()), "image": str(artifacts.qcow2),
                          "hash": artifacts.hash, "kernel": kernel,
                          "pids": {**daemons, "forwarder": forwarder}, "up_seconds": round(seconds, 1)})
            Console(stderr=True).print(f"vagrant up reached SSH in {seconds:.0f} s")
            return endpoint

    def down(self) -> None:
        """Destroy the VM and leave nothing of the lab: no qemu, libvirtd, virtlogd, dnsmasq, namespace.
        With no lab of its own, a machine of `vagrant up` in the repo root is destroyed instead."""
        with self._lock():
            machine = None if self._recorded() or self.netns.exists() else vagrant_repo.find()
            if machine is not None:
                machine.destroy()
            self._teardown()

    def _own_endpoint(self) -> Endpoint | None:
        recorded = self._recorded()
        if recorded is None or not self.netns.exists() or recorded["pids"]["forwarder"] not in \
                self.netns.member_pids():
            return None
        return Endpoint.from_json(json.dumps(recorded["endpoint"]))

    def endpoint(self) -> Endpoint:
        """The running lab's SSH endpoint: 127.0.0.1 and the forwarder's port, or the repo root's machine."""
        own = self._own_endpoint()
        if own is not None:
            return own
        machine = vagrant_repo.find()
        if machine is not None:
            return machine.endpoint()
        raise GuestUnreachable(not_up(self.name, f"no machine of `fab up` in {self.dir}, "
                                                 f"none of `vagrant up` in {REPO_ROOT}"))

    def info(self) -> dict[str, Any]:
        """Provider, endpoint, image, kernel (`uname -r` at up), accel (the Vagrantfile's libvirt driver)."""
        own = self._own_endpoint()
        if own is None:
            return self._repo_machine_info()
        recorded = self._recorded() or {}
        return {"provider": self.name, "endpoint": f"{own.user}@{own.host}:{own.port}",
                "image": recorded.get("image", ""), "kernel": recorded.get("kernel", ""),
                "accel": "kvm" if self.lab.vm.accel == "kvm" else "tcg", "netns": NETNS,
                "up_seconds": recorded.get("up_seconds")}

    def _repo_machine_info(self) -> dict[str, Any]:
        endpoint = self.endpoint()
        with connect(endpoint) as conn:
            kernel = conn.run("uname -r", hide=True, in_stream=False).stdout.strip()
        machine = vagrant_repo.find()
        return {"provider": self.name, "endpoint": f"{endpoint.user}@{endpoint.host}:{endpoint.port}",
                "image": box.BOX_NAME, "kernel": kernel, "machine": machine.where() if machine else ""}

    # -- steps -----------------------------------------------------------------------------------

    def vagrant(self, log: Path | None = None) -> NetnsVagrant:
        """python-vagrant on the repo's Vagrantfile, in the namespace, with the lab's environment."""
        cm = vagrant.make_file_cm(str(log)) if log else None
        return NetnsVagrant(self.netns, root=str(REPO_ROOT), env=self._env(), out_cm=cm, err_cm=cm,
                            quiet_stdout=log is None, quiet_stderr=log is None)

    def _env(self) -> dict[str, str]:
        env = {**box.vagrant_env(), "VAGRANT_DEFAULT_PROVIDER": "libvirt",
               "VAGRANT_DOTFILE_PATH": str(self.dir / "dotvagrant"),
               "DNSLAB_CPUS": str(self.lab.vm.cpus), "DNSLAB_MEMORY_MIB": str(self.lab.vm.memory_mib),
               "DNSLAB_SERIAL_LOG": str(self.serial_log), "DNSLAB_SSH_KEY": str(lab_key())}
        if Path(self.lab.source).is_file():
            env["DNSLAB_LAB"] = str(Path(self.lab.source).resolve())
        return env

    def _forget_stale_vm(self) -> None:
        """Remove what an interrupted run may have left in libvirt: our domain, older box uploads."""
        self._remove_domain()
        current = box.added_dir() / "box.img"
        if current.exists():
            keep = f"{BOX_VOLUME_PREFIX}0_{int(current.stat().st_mtime)}_box.img"
            libvirt_netns.prune_volumes(self.netns, BOX_VOLUME_PREFIX, keep)

    def _remove_domain(self) -> None:
        if DOMAIN in libvirt_netns.names(self.netns, "list", "--all", "--name"):
            libvirt_netns.virsh(self.netns, "destroy", DOMAIN, check=False)
            libvirt_netns.virsh(self.netns, "undefine", DOMAIN, "--remove-all-storage", check=False)

    def _vagrant_up(self) -> None:
        self.serial_log.unlink(missing_ok=True)
        self.up_log.write_text("")
        tail: deque[str] = deque(maxlen=3)
        machine = self.vagrant(log=self.up_log)
        progress = Progress(SpinnerColumn(), TextColumn("vagrant up"), TimeElapsedColumn(),
                            TextColumn("{task.description}"), console=Console(stderr=True), transient=True)
        try:
            with progress, self.up_log.open("a") as log:
                task = progress.add_task("starting")
                for line in machine.up(provider="libvirt", stream_output=True):
                    log.write(line)
                    log.flush()
                    if line.strip():
                        tail.append(line.strip())
                        progress.update(task, description=line.strip()[:90])
        except subprocess.CalledProcessError:
            raise ActionFailed(f"`vagrant up` failed: {' | '.join(tail)}; full log {self.up_log}; "
                               f"serial console {self.serial_log}: "
                               f"{' | '.join(_tail(self.serial_log, 2))}") from None

    def _forward_ssh(self) -> tuple[Endpoint, int]:
        """Start the loopback forwarder to the VM's SSH inside the namespace; the Endpoint and its PID."""
        conf = self.vagrant().conf()
        argv = [sys.executable, "-m", "lab.providers.vagrant.netns_forward", str(self.netns.path),
                conf["HostName"], conf.get("Port", "22")]
        with (self.dir / "forwarder.log").open("ab") as log:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                    start_new_session=True, text=True)
        port = proc.stdout.readline().strip() if proc.stdout else ""
        if not port.isdigit():
            raise ActionFailed(f"the SSH forwarder did not start; see {self.dir / 'forwarder.log'}")
        return pinned_endpoint("127.0.0.1", int(port)), proc.pid

    def _teardown(self) -> None:
        """`vagrant destroy`; then libvirt's domain and network by virsh in case vagrant could not; then
        every process of the namespace by PID, and the namespace."""
        if self.netns.exists():
            if _vagrant_machine_exists(self.dir / "dotvagrant"):
                libvirt_netns.start_daemons(self.netns, self.dir)
                with contextlib.suppress(subprocess.CalledProcessError):
                    self.vagrant(log=self.dir / "vagrant-destroy.log").destroy()
            if any(_comm(pid) == "libvirtd" for pid in self.netns.member_pids()):
                self._remove_domain()
                libvirt_netns.remove_network(self.netns, NETWORK)
            self.netns.delete()
            libvirt_netns.forget_network_runtime(NETWORK)
        shutil.rmtree(self.dir / "dotvagrant", ignore_errors=True)
        self.state_file.unlink(missing_ok=True)

    # -- state -----------------------------------------------------------------------------------

    def _recorded(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def _record(self, data: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with (self.dir / "lock").open("w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LabError("another `fab up` or `fab down` of the vagrant lab is running; "
                               "wait for it") from None
            yield


def _image(lab: Lab) -> Any:
    """The lab image (built or reused) with its box, which `box.with_box` adds to Vagrant."""
    from lab.image.build import build

    return box.with_box(build(lab))


def _tail(path: Path, count: int) -> list[str]:
    """The last `count` non-empty lines of a console log, without terminal escapes."""
    try:
        text = path.read_bytes()[-8192:].decode(errors="replace")
    except OSError:
        return []
    lines = [ANSI.sub("", line).strip() for line in text.replace("\r", "\n").splitlines()]
    return [line for line in lines if line][-count:]


def _vagrant_machine_exists(dotfile: Path) -> bool:
    return any(dotfile.glob("machines/*/libvirt/id"))


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _wait_for_ssh(endpoint: Endpoint, timeout_s: float) -> str:
    """The guest's kernel release, over the forwarder, once SSH works (vagrant up saw it inside)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with connect(endpoint, timeout=10) as conn:
                return conn.run("uname -r", hide=True).stdout.strip()
        except HostKeyError:
            raise
        except Exception as err:  # noqa: BLE001 - paramiko raises many kinds while sshd starts
            last = err
            time.sleep(1)
    raise GuestUnreachable(f"the lab VM did not answer SSH through 127.0.0.1:{endpoint.port} "
                           f"within {timeout_s:.0f} s: {last}")
