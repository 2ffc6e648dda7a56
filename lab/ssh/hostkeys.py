"""SSH host keys: every connection to the lab host checks the key it presents against a pinned one.

Pinned keys live in OpenSSH known_hosts files (`Endpoint.known_hosts`), under the endpoint's
`host_key_alias` or, without one, under `[host]:port` (`host` on port 22), as OpenSSH spells them;
so the `ssh` command line `fab up` prints verifies the same way (`ssh_options`).

- qemu: the VM makes its host keys at its first boot. `fab up` pins the key it presents on the
  127.0.0.1 port that the qemu process it just started holds (the listening socket is checked to be
  that process's), before anything else logs in: the first use is our own boot, and every later
  connection must present the same key. Every `fab up` boots a fresh overlay, so a fresh key.
- vagrant: the Vagrantfile makes a host key per lab state (`host_key_path`) and its provisioner
  installs it (packer/box/authorize-root.sh): known before the VM boots.
- ssh: the lab's own known_hosts, then the user's ~/.ssh/known_hosts. An unknown key is refused
  in one line, unless accepted explicitly (`fab up --accept-host-key`), which pins it in the lab's file.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import paramiko

from lab.local.atomic import write_atomic
from lab.local.state import sub
from lab.model.errors import GuestUnreachable

ALIAS = "dnslab-lab"  # the name qemu and vagrant labs' keys are pinned under (their port changes)


class HostKeyError(GuestUnreachable):
    """The lab host presented a key that is not pinned, or another key than the pinned one."""


def known_hosts_path() -> Path:
    """The lab's own known_hosts: state_dir()/ssh/known_hosts."""
    return sub("ssh") / "known_hosts"


def host_key_path() -> Path:
    """The vagrant lab's host key (private half; `.pub` beside it), made by the Vagrantfile."""
    return sub("ssh") / "host_ed25519_key"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's `SHA256:...` fingerprint of a key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def lookup_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def names(endpoint: Any) -> list[str]:
    """The names the endpoint's key is pinned under (the alias, else OpenSSH's `[host]:port`)."""
    if endpoint.host_key_alias:
        return [endpoint.host_key_alias]
    return [lookup_name(endpoint.host, endpoint.port)]


def pinned(endpoint: Any) -> list[paramiko.PKey]:
    """The keys pinned for the endpoint, in the order of its known_hosts files."""
    keys: list[paramiko.PKey] = []
    for path in endpoint.known_hosts:
        file = Path(path).expanduser()
        if not file.is_file():
            continue
        table = paramiko.HostKeys()
        try:
            table.load(str(file))
        except (OSError, paramiko.SSHException, ValueError) as err:
            raise HostKeyError(f"{file}: unreadable known_hosts ({err}); fix or remove it") from None
        for name in names(endpoint):
            entry = table.lookup(name)
            keys += list(entry.values()) if entry else []
    return keys


def pin(path: Path, name: str, key: paramiko.PKey) -> None:
    """Write `name key` into the known_hosts file at path, replacing the lines for that name."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        lines = []
    kept = [line for line in lines if line.split(" ", 1)[0] not in (name, f"{name},")]
    write_atomic(path, "\n".join([*kept, f"{name} {key.get_name()} {key.get_base64()}"]) + "\n", 0o600)


def pin_public_key(pub: Path, name: str = ALIAS) -> None:
    """Pin the public key file `pub` (OpenSSH format) under `name` in the lab's known_hosts."""
    fields = pub.read_text().split()
    if len(fields) < 2:
        raise HostKeyError(f"{pub}: not an SSH public key; remove it and run `vagrant provision`")
    key = paramiko.PKey.from_type_string(fields[0], base64.b64decode(fields[1]))
    pin(known_hosts_path(), name, key)


def forget(name: str = ALIAS) -> None:
    """Drop the lab's pin for `name` (a qemu lab's VM is new at every `fab up`)."""
    path = known_hosts_path()
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if line.split(" ", 1)[0] != name]
        write_atomic(path, "".join(f"{line}\n" for line in kept), 0o600)


def ssh_options(endpoint: Any) -> list[str]:
    """OpenSSH options that check the endpoint's host key as dnslab does."""
    files = " ".join(str(Path(p).expanduser()) for p in endpoint.known_hosts)
    options = ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={files}"]
    return options + (["-o", f"HostKeyAlias={endpoint.host_key_alias}"] if endpoint.host_key_alias else [])


class _Unpinned(paramiko.MissingHostKeyPolicy):
    """No key pinned for the host: pin the presented one when accepting, else refuse in one line."""

    def __init__(self, endpoint: Any, accept: bool) -> None:
        self.endpoint, self.accept = endpoint, accept

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        where = f"{self.endpoint.user}@{self.endpoint.host}:{self.endpoint.port}"
        if self.accept and self.endpoint.known_hosts:
            pin(Path(self.endpoint.known_hosts[0]).expanduser(), names(self.endpoint)[0], key)
            return
        if self.endpoint.host_key_alias or not self.endpoint.known_hosts:
            files = " ".join(self.endpoint.known_hosts) or "no file"
            raise HostKeyError(f"{where} presents host key {key.get_name()} {fingerprint(key)}, and none "
                               f"is pinned for this lab ({files}); {mismatch_fix(self.endpoint)}")
        raise HostKeyError(f"{where} presents an unknown host key ({key.get_name()} {fingerprint(key)}); "
                           f"check it on the host (`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`), then "
                           f"accept it with `fab up --accept-host-key`")


class PinnedClient(paramiko.SSHClient):
    """paramiko's client with the endpoint's pinned keys loaded and a mismatch as a one-line error."""

    def __init__(self, endpoint: Any, accept_new: bool = False) -> None:
        super().__init__()
        self.endpoint = endpoint
        name = lookup_name(endpoint.host, endpoint.port)
        for key in pinned(endpoint):
            self.get_host_keys().add(name, key.get_name(), key)
        self.set_missing_host_key_policy(_Unpinned(endpoint, accept_new))

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().connect(*args, **kwargs)
        except paramiko.BadHostKeyException as err:
            e = self.endpoint
            raise HostKeyError(
                f"{e.user}@{e.host}:{e.port} presents host key {err.key.get_name()} {fingerprint(err.key)}, "
                f"not the one pinned in {', '.join(e.known_hosts)} ({fingerprint(err.expected_key)}); "
                f"{mismatch_fix(e)}") from None


def mismatch_fix(endpoint: Any) -> str:
    """What to do when the lab host's key changed."""
    if endpoint.host_key_alias:
        return ("the lab VM is not the one `fab up` started (or was provisioned before host keys were "
                "pinned): `fab down`, then `fab up` (a `vagrant up` machine: `vagrant provision`)")
    return ("if the host was reinstalled, remove its line from that file and run `fab up --accept-host-key`; "
            "otherwise something else answers at that address")
