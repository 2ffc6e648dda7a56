"""Providers of the lab host, chosen by `[vm] provider` in lab.toml, and the memory of the running lab's.

Whichever task brings a lab up (`fab up`, `fab demo`) records its provider in state_dir()/provider;
every later task uses that provider unless given --provider, and `fab down` forgets it. A machine of
a plain `vagrant up` in the repo root counts as a running vagrant lab.
"""

from __future__ import annotations

from typing import Any

from lab.model.config import Lab
from lab.model.errors import ConfigError, LabError
from lab.model.parse import with_overrides
from lab.providers.base import Provider
from lab.ssh.endpoint import Endpoint, connect

BOOTED = ("qemu", "vagrant")  # providers that start a lab of their own (ssh names an existing host)


def get_provider(lab: Lab) -> Provider:
    """The provider named by lab.vm.provider: qemu (built in), vagrant or ssh."""
    if lab.vm.provider == "qemu":
        from lab.providers.qemu import QemuProvider

        return QemuProvider(lab)
    if lab.vm.provider == "ssh":
        from lab.providers.ssh import SSHProvider

        return SSHProvider(lab)
    from lab.providers.vagrant.provider import VagrantProvider

    return VagrantProvider(lab)


def lab_image(lab: Lab, force: bool = False) -> Any:
    """The lab image for lab.vm.provider, built or reused; with its Vagrant box for the vagrant provider."""
    from lab.image.build import build

    image = build(lab, force=force)
    if lab.vm.provider != "vagrant":
        return image
    from lab.providers.vagrant.box import with_box

    return with_box(image)


def _provider_file():
    from lab.local.state import state_dir

    return state_dir() / "provider"


def _recorded() -> str | None:
    path = _provider_file()
    return path.read_text().strip() or None if path.exists() else None


def remembered_provider() -> str | None:
    """The provider of the running lab: the one it was brought up with, else "vagrant" when a
    `vagrant up` made a machine in the repo root, else None (lab.toml decides)."""
    from lab.providers.vagrant import repo as vagrant_repo

    return _recorded() or ("vagrant" if vagrant_repo.find() is not None else None)


def running_lab(path: str | None = None, provider: str | None = None) -> Lab:
    """The lab file's model (`path`, else $DNSLAB_LAB, else lab.toml) with `provider`, else the provider
    the lab was brought up with."""
    from lab.model.parse import load_lab

    model = load_lab(path)
    provider = provider or remembered_provider()
    return with_overrides(model, {"vm": {"provider": provider}}) if provider else model


def remember_provider(name: str | None) -> None:
    """Record (or, with None, forget) the provider of the running lab."""
    path = _provider_file()
    if name:
        path.write_text(name + "\n")
    else:
        path.unlink(missing_ok=True)


def _running(lab: Lab, provider: str) -> bool:
    try:
        get_provider(with_overrides(lab, {"vm": {"provider": provider}})).endpoint()
    except LabError:
        return False
    return True


def bring_up(lab: Lab, *, accept_host_key: bool = False) -> Endpoint:
    """Start the lab with lab.vm.provider and remember that provider for every later task. Refused
    while a lab of another provider runs (`fab down` first). `accept_host_key` (the ssh provider
    only) pins the key the host presents when none is pinned yet (lab.ssh.hostkeys)."""
    if accept_host_key:
        if lab.vm.provider != "ssh":
            raise ConfigError("--accept-host-key is for the ssh provider: a qemu or vagrant lab pins its "
                              "VM's host key itself")
        accept_host_key_of(get_provider(lab).endpoint())
    before = _recorded()
    if before in BOOTED and before != lab.vm.provider and _running(lab, before):
        raise LabError(f"a {before} lab is up; `fab down` stops it before a {lab.vm.provider} lab can start")
    remember_provider(lab.vm.provider)  # before booting: tasks run meanwhile look for this lab
    try:
        return get_provider(lab).up()
    except BaseException:
        remember_provider(before)
        raise


def accept_host_key_of(endpoint: Endpoint) -> None:
    """Log in once, pinning the host key the endpoint presents if none is pinned for it yet (a pinned
    key that differs is still refused)."""
    from rich.console import Console

    from lab.ssh.hostkeys import fingerprint

    with connect(endpoint, accept_new_host_key=True) as conn:
        conn.run("true", hide=True, in_stream=False)
        key = conn.client.get_transport().get_remote_server_key()
    Console(stderr=True).print(f"host key of {endpoint.host}:{endpoint.port}: {key.get_name()} "
                               f"{fingerprint(key)}, pinned in {endpoint.known_hosts[0]}")


def ensure_up(lab: Lab) -> Endpoint:
    """The running lab's endpoint, bringing it up first when it is not (remembered either way)."""
    try:
        endpoint = get_provider(lab).endpoint()
    except LabError:
        return bring_up(lab)
    remember_provider(lab.vm.provider)
    return endpoint


def take_down(lab: Lab) -> None:
    """Stop the lab of lab.vm.provider; forget the remembered provider when it was this one."""
    get_provider(lab).down()
    if _recorded() in (None, lab.vm.provider):
        remember_provider(None)


def open_lab(endpoint: Endpoint) -> Any:
    """A Fabric connection to the lab host, checked to be root there (one round trip)."""
    from lab.ssh import remote

    conn = connect(endpoint)
    remote.require_root(conn)
    return conn


def connect_lab(lab: Lab) -> Any:
    """A root connection to the running lab of lab.vm.provider; a one-line error when it is not up."""
    return open_lab(get_provider(lab).endpoint())
