"""End to end: the vagrant provider (vagrant-libvirt, TCG) boots the lab image and leaves nothing behind.

It boots its own VM (not the session one): `vagrant up` inside the namespace dnslab-vagrant reaches
SSH through the loopback forwarder, libvirt's addresses stay inside the namespace, a second `up`
is refused, and `down` stops every process of the lab (qemu, libvirtd, virtlogd, dnsmasq, the
forwarder) and deletes the namespace.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from lab.config import load_lab, with_overrides
from lab.endpoint import connect
from lab.errors import LabError
from lab.providers.vagrant import NETNS, VagrantProvider

pytestmark = [pytest.mark.e2e, pytest.mark.vagrant]

LIBVIRT_NET = "192.168.121."  # vagrant-libvirt's management network, inside the namespace only


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def host_addresses() -> str:
    return subprocess.run(["ip", "-4", "-br", "addr"], capture_output=True, text=True, check=True).stdout


def test_vagrant_up_reaches_ssh_and_down_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DNSLAB_STATE", str(tmp_path / "state"))
    provider = VagrantProvider(with_overrides(load_lab(), {"vm": {"provider": "vagrant"}}))
    started = time.monotonic()
    try:
        endpoint = provider.up()
        up_s = time.monotonic() - started
        print(f"\nvagrant up to SSH: {up_s:.0f} s")

        assert endpoint.host == "127.0.0.1" and endpoint.user == "vagrant"
        with connect(endpoint) as conn:
            guest = conn.run("id -un; sudo -n id -un; ip -4 -br addr show eth0", hide=True).stdout.split("\n")
        assert guest[:2] == ["vagrant", "root"]
        assert LIBVIRT_NET in guest[2]  # the guest's address is libvirt's private one...
        assert LIBVIRT_NET not in host_addresses()  # ...which the host itself never has
        inside = subprocess.run(["ip", "netns", "exec", NETNS, "ip", "-4", "-br", "addr"],
                                capture_output=True, text=True, check=True).stdout
        assert LIBVIRT_NET in inside

        info = provider.info()
        assert info["provider"] == "vagrant" and info["endpoint"] == f"vagrant@127.0.0.1:{endpoint.port}"
        assert info["kernel"] and Path(info["image"]).exists()
        with pytest.raises(LabError, match="already up"):
            provider.up()

        members = {pid: comm(pid) for pid in provider.netns.member_pids()}
        assert {"libvirtd", "virtlogd", "dnsmasq", "qemu-system-x86"} <= set(members.values()), members
    finally:
        provider.down()

    assert not provider.netns.exists()
    assert [pid for pid in members if alive(pid)] == []
    assert not Path("/etc/libvirt/qemu/dnslab_default.xml").exists()  # the domain is undefined
    assert not Path("/run/libvirt/network/dnslab-vagrant.pid").exists()
    with pytest.raises(LabError, match="not up"):
        provider.endpoint()
    provider.down()  # idempotent
