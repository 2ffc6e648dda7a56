"""A Vagrant machine made by a plain `vagrant up` in the repo root, where libvirt or VirtualBox can be
used directly (on a host like the build host, `fab up --provider vagrant` is the way instead).

The Fabric tasks find it through `vagrant ssh-config` (python-vagrant) and log in as root with the
lab's own key, which the repo's Vagrantfile authorises at the first `vagrant up`. A machine that was
not made from the lab's box is refused with a one-line error.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vagrant

from lab.image.steps import last_lines
from lab.local.state import lab_key, sub
from lab.model.config import REPO_ROOT
from lab.model.errors import ConfigError, GuestUnreachable
from lab.providers.vagrant import box
from lab.ssh.endpoint import Endpoint
from lab.ssh.hostkeys import ALIAS, host_key_path, known_hosts_path, pin_public_key


@dataclass(frozen=True)
class RepoMachine:
    """One machine under ROOT/.vagrant/machines/NAME/PROVIDER (Vagrant's default data directory)."""

    root: Path
    name: str
    provider: str

    @property
    def data_dir(self) -> Path:
        return self.root / ".vagrant" / "machines" / self.name / self.provider

    def where(self) -> str:
        return f"the Vagrant machine `{self.name}` ({self.provider}) in {self.root}"

    def box(self) -> str | None:
        """The box Vagrant made it from (the box_meta file `vagrant up` writes), if known."""
        try:
            return json.loads((self.data_dir / "box_meta").read_text()).get("name")
        except (OSError, ValueError, AttributeError):
            return None

    def check_box(self) -> None:
        made_from = self.box()
        if made_from != box.BOX_NAME:
            raise ConfigError(f"{self.where()} was made from box {made_from or '(unknown)'}, not the lab's "
                              f"{box.BOX_NAME}; `vagrant destroy` it, then `fab image --provider vagrant` "
                              "and `vagrant up`")

    def _vagrant(self, log: Path) -> vagrant.Vagrant:
        env = {**box.vagrant_env(), "DNSLAB_SSH_KEY": str(lab_key())}
        return vagrant.Vagrant(root=str(self.root), env=env, quiet_stderr=False,
                               err_cm=vagrant.make_file_cm(str(log), mode="w"))

    def _run(self, what: str, call: Any) -> Any:
        log = sub("vagrant") / "repo-machine.log"
        try:
            return call(self._vagrant(log))
        except subprocess.CalledProcessError:
            tail = " | ".join(last_lines(log, 2)) or "no output"
            raise GuestUnreachable(f"{self.where()}: `vagrant {what}` failed ({tail}); is it up? "
                                   "`vagrant up` starts it") from None

    def endpoint(self) -> Endpoint:
        """Where it answers SSH (`vagrant ssh-config`), as root with the lab's own key."""
        self.check_box()
        key = lab_key()
        if not key.exists():
            raise GuestUnreachable(f"{self.where()}: the lab's key {key} is missing; "
                                   "`vagrant provision` makes it and lets root log in with it")
        conf = self._run("ssh-config", lambda v: v.conf(vm_name=self.name))
        return pinned_endpoint(conf["HostName"], int(conf.get("Port", 22)))

    def destroy(self) -> None:
        """`vagrant destroy --force` the machine."""
        self._run("destroy", lambda v: v.destroy(vm_name=self.name))


def pinned_endpoint(host: str, port: int) -> Endpoint:
    """A vagrant lab's endpoint: root with the lab's key, its host key the one the Vagrantfile made and
    its provisioner installed (lab.ssh.hostkeys.host_key_path), pinned in the lab's known_hosts."""
    pub = Path(f"{host_key_path()}.pub")
    if not pub.exists():
        raise GuestUnreachable(f"the vagrant lab's host key {pub} is missing; "
                               "`vagrant provision` (or `fab down` and `fab up --provider vagrant`) "
                               "makes and installs it")
    pin_public_key(pub)
    return Endpoint(host=host, port=port, user="root", key=str(lab_key()),
                    known_hosts=(str(known_hosts_path()),), host_key_alias=ALIAS)


def find(root: Path | None = None) -> RepoMachine | None:
    """The machine a `vagrant up` in `root` (default: the repo root) made (its id file exists while it
    does), if any."""
    root = root or REPO_ROOT
    for id_file in sorted((root / ".vagrant" / "machines").glob("*/*/id")):
        if id_file.read_text().strip():
            return RepoMachine(root=root, name=id_file.parent.parent.name, provider=id_file.parent.name)
    return None
