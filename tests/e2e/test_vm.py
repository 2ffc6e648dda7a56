"""The lab VM itself: boots from the image, answers SSH, has what the lab needs, stops cleanly."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lab.image.build import cached_image
from lab.model.config import REPO_ROOT
from lab.model.errors import LabError
from lab.model.parse import with_overrides
from lab.providers import accept_host_key_of
from lab.providers.qemu import QemuProvider
from lab.providers.ssh import SSHProvider
from lab.ssh.hostkeys import HostKeyError

from .conftest import qemu_pids_using

pytestmark = pytest.mark.e2e
FAB = [sys.executable, "-m", "fabric"]


def test_debian_kernel_and_the_image_it_booted(lab_vm, conn):
    lab, _ = lab_vm
    assert re.fullmatch(r"6\.1\.0-\d+-amd64", conn.run("uname -r").stdout.strip())
    assert conn.run("cat /etc/debian_version").stdout.startswith("12.")
    assert conn.run("hostname").stdout.strip() == "dnslab"
    assert conn.run("cat /etc/dnslab/image-release").stdout.strip() == cached_image().hash


def test_ipvs_vlan_ipvlan_work_in_a_scratch_namespace(conn):
    script = """
        set -e
        ip netns add dnslab-e2e-probe
        trap 'ip netns del dnslab-e2e-probe' EXIT
        n() { ip netns exec dnslab-e2e-probe "$@"; }
        n ip link add probe0 type dummy
        n ip link add link probe0 name probe0.53 type vlan id 53
        n ip link add link probe0.53 name probe-ipvl type ipvlan mode l3s
        n ip link set probe0 up
        n ip link set probe0.53 up
        n ip addr add 192.168.100.254/24 dev probe0.53
        n ipvsadm -A -u 192.168.100.100:53 -s rr
        n ipvsadm -a -u 192.168.100.100:53 -r 192.168.100.11:53 -m
        n ipvsadm -Ln
        n sysctl -n net.ipv4.vs.expire_nodest_conn
        n iptables -t nat -A POSTROUTING -m ipvs --vaddr 192.168.100.100/32 --vport 53 -j SNAT \
            --to-source 192.168.100.254
        n ip -d -br link
    """
    out = conn.run(f"bash -c {shlex.quote(script)}").stdout
    assert "UDP  192.168.100.100:53 rr" in out and "-> 192.168.100.11:53" in out
    assert re.search(r"probe-ipvl@probe0\.53", out) and "probe0.53@probe0" in out
    assert "dnslab-e2e-probe" not in conn.run("ip netns list").stdout


def test_stock_unbound_and_keepalived_never_start(conn):
    states = conn.run("systemctl is-enabled unbound.service keepalived.service", warn=True).stdout.split()
    assert states == ["masked", "masked"]
    active = conn.run("systemctl is-active unbound.service keepalived.service", warn=True).stdout.split()
    assert active == ["inactive", "inactive"]
    assert conn.run("test -x /opt/dnslab/venv/bin/locust && /opt/dnslab/venv/bin/python -c 'import dns'").ok


def test_root_key_came_through_fw_cfg(lab_vm, conn):
    _, endpoint = lab_vm
    ours = Path(f"{endpoint.key}.pub").read_text().split()[:2]
    assert conn.run("cat /root/.ssh/authorized_keys").stdout.split()[:2] == ours


def test_no_vagrant_user_or_insecure_key_in_the_image_qemu_boots(conn):
    """Only the Vagrant box has the vagrant user (Vagrant's public insecure key, passwordless sudo)."""
    assert not conn.run("getent passwd vagrant", warn=True).ok
    assert not conn.run("test -e /etc/sudoers.d/vagrant || test -e /home/vagrant", warn=True).ok
    keys = conn.run("cat /root/.ssh/authorized_keys", warn=True).stdout
    assert "vagrant" not in keys and len(keys.strip().splitlines()) == 1


def test_second_up_says_already_up(lab_vm):
    lab, endpoint = lab_vm
    with pytest.raises(LabError, match=rf"already up .*127\.0\.0\.1:{endpoint.port}"):
        QemuProvider(lab).up()
    cli = subprocess.run([*FAB, "up"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2
    assert cli.stderr.strip().startswith("dnslab: error: lab is already up") and len(
        cli.stderr.strip().splitlines()) == 1


def test_info_over_ssh(lab_vm):
    lab, endpoint = lab_vm
    info = QemuProvider(lab).info()
    assert info["provider"] == "qemu" and info["endpoint"] == f"root@127.0.0.1:{endpoint.port}"
    assert info["accel"] in ("kvm", "tcg") and info["kernel"].endswith("-amd64")


def test_ssh_provider_reaches_an_existing_host(lab_vm):
    lab, endpoint = lab_vm
    ssh_lab = with_overrides(lab, {"vm": {"provider": "ssh"}, "ssh": {
        "host": endpoint.host, "port": endpoint.port, "user": endpoint.user, "key": endpoint.key}})
    provider = SSHProvider(ssh_lab)
    # a host whose key nobody pinned is refused in one line until the user accepts it (lab.ssh.hostkeys)
    with pytest.raises(HostKeyError, match=r"presents an unknown host key .*fab up --accept-host-key"):
        provider.up()
    accept_host_key_of(provider.endpoint())
    up = provider.up()
    assert (up.host, up.port, up.user, up.key) == (endpoint.host, endpoint.port, endpoint.user, endpoint.key)
    assert provider.info()["kernel"].endswith("-amd64")
    wrong = SSHProvider(with_overrides(ssh_lab, {"ssh": {"user": "nobody"}}))
    with pytest.raises(LabError, match=r"\[ssh\] nobody@127\.0\.0\.1:\d+ does not answer SSH"):
        wrong.up()


def test_vm_that_never_answers_names_the_serial_log_and_leaves_nothing(tmp_path, lab_vm):
    lab, _ = lab_vm
    lab_file = tmp_path / "lab.toml"
    lab_file.write_text((REPO_ROOT / "lab.toml").read_text().replace("boot_timeout_s = 300",
                                                                     "boot_timeout_s = 4"))
    env_state = tmp_path / "state"
    cli = subprocess.run([*FAB, "up", f"--lab={lab_file}"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "DNSLAB_STATE": str(env_state)})
    assert cli.returncode == 1, cli.stderr
    err = cli.stderr.strip().splitlines()[-1]
    assert err.startswith("dnslab: error: the lab VM did not answer SSH within 4 s")
    assert f"serial log: {env_state}/vm/serial.log; last lines:" in err
    assert qemu_pids_using(env_state / "vm" / "overlay.qcow2") == []
    assert not (env_state / "vm" / "qemu.pid").exists() and not (env_state / "vm" / "overlay.qcow2").exists()
