"""The qemu provider's pure and local parts: command line, state checks, keys, ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from lab.image.accel import choose_accel, kvm_probe_argv
from lab.image.build import ImageArtifacts
from lab.local.state import ensure_key
from lab.model.errors import LabError
from lab.model.parse import parse_lab
from lab.providers import get_provider
from lab.providers.qemu import QemuProvider, free_port, qemu_argv
from lab.ssh.endpoint import Endpoint

IMAGE = ImageArtifacts("h" * 64, Path("/c/dnslab.qcow2"), Path("/c/vmlinuz"), Path("/c/initrd.img"))


def _argv(accel: str) -> list[str]:
    return qemu_argv(image=IMAGE, overlay=Path("/s/vm/overlay.qcow2"), port=40022, pubkey=Path("/s/k.pub"),
                     serial=Path("/s/vm/serial.log"), pidfile=Path("/s/vm/qemu.pid"), accel=accel, cpus=2,
                     memory_mib=2048)


def _after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_network_is_restricted_and_ssh_forwarded_on_loopback_only():
    argv = _argv("tcg")
    assert _after(argv, "-netdev") == ["user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22"]
    assert "-nic" not in argv and "-net" not in argv


def test_tcg_and_kvm_command_lines():
    tcg, kvm = _argv("tcg"), _argv("kvm")
    assert _after(tcg, "-accel") == ["tcg,thread=multi"] and _after(tcg, "-cpu") == ["max"]
    assert _after(kvm, "-accel") == ["kvm"] and _after(kvm, "-cpu") == ["host"]
    assert _after(tcg, "-machine") == ["q35"]
    assert _after(tcg, "-smp") == ["2"] and _after(tcg, "-m") == ["2048"]


def test_direct_kernel_boot_with_label_root_and_eth0():
    argv = _argv("tcg")
    assert _after(argv, "-kernel") == ["/c/vmlinuz"] and _after(argv, "-initrd") == ["/c/initrd.img"]
    cmdline = _after(argv, "-append")[0]
    assert "root=LABEL=dnslab-root" in cmdline and "net.ifnames=0" in cmdline and "console=ttyS0" in cmdline


def test_grub_boot_leaves_the_kernel_to_the_disk():
    argv = qemu_argv(image=IMAGE, overlay=Path("/s/o.qcow2"), port=1, pubkey=Path("/s/k.pub"),
                     serial=Path("/s/serial.log"), pidfile=Path("/s/pid"), accel="tcg", cpus=1,
                     memory_mib=512, grub=True)
    assert not {"-kernel", "-initrd", "-append"} & set(argv)
    assert _after(argv, "-drive") == ["file=/s/o.qcow2,if=virtio,format=qcow2,discard=unmap"]


def test_key_overlay_serial_and_pidfile_are_wired():
    argv = _argv("tcg")
    assert _after(argv, "-fw_cfg") == ["name=opt/dnslab/authorized_keys,file=/s/k.pub"]
    assert _after(argv, "-drive") == ["file=/s/vm/overlay.qcow2,if=virtio,format=qcow2,discard=unmap"]
    assert _after(argv, "-serial") == ["file:/s/vm/serial.log"]
    assert _after(argv, "-pidfile") == ["/s/vm/qemu.pid"] and "-daemonize" in argv


def test_kvm_probe_exits_instead_of_rebooting():
    argv = kvm_probe_argv(Path("/c/vmlinuz"), Path("/tmp/probe.log"))
    assert "-no-reboot" in argv and "panic=-1" in _after(argv, "-append")[0]


def test_free_port_is_bindable_on_loopback():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("DNSLAB_STATE", str(tmp_path))
    return tmp_path


def test_ensure_key_generates_once(state):
    key = ensure_key()
    assert key == state / "ssh" / "id_ed25519" and Path(f"{key}.pub").read_text().startswith("ssh-ed25519 ")
    first = key.read_bytes()
    assert ensure_key().read_bytes() == first


def test_not_up_is_a_clear_error(state, raw_lab):
    provider = get_provider(parse_lab(raw_lab))
    assert isinstance(provider, QemuProvider)
    with pytest.raises(LabError, match=r"^the qemu lab is not up .*; start it with "
                                       r"`fab up --provider qemu`$"):
        provider.endpoint()
    provider.down()  # a no-op when nothing runs


def test_a_pid_that_is_not_our_qemu_is_never_ours_and_never_killed(state, raw_lab):
    provider = QemuProvider(parse_lab(raw_lab))
    provider.dir.mkdir(parents=True)
    provider.pidfile.write_text(f"{os.getpid()}\n")  # this pytest process: alive, but not our qemu
    provider.endpoint_file.write_text('{"host": "127.0.0.1", "port": 1, "user": "root", "key": ""}')
    assert provider.pid() is None
    with pytest.raises(LabError, match="not up"):
        provider.endpoint()
    provider.down()
    assert not provider.pidfile.exists() and not provider.endpoint_file.exists()


def test_forced_accel_needs_no_probe(tmp_path):
    missing_kernel = tmp_path / "no-such-vmlinuz"  # a probe would have to read it
    assert choose_accel("tcg", missing_kernel) == "tcg"
    assert choose_accel("kvm", missing_kernel) == "kvm"


def test_missing_qemu_names_its_package(state, raw_lab, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(LabError, match=r"qemu provider needs qemu-system-x86_64; install it: apt-get install "
                                       r"qemu-system-x86"):
        QemuProvider(parse_lab(raw_lab)).up()


def test_a_guest_kernel_panic_fails_the_boot_at_once(state, raw_lab, monkeypatch):
    """Kernel 6.12 (trixie) panicked once at boot here under TCG: the wait stops at the panic, not
    after boot_timeout_s, and says so in one line."""
    provider = QemuProvider(parse_lab(raw_lab))
    provider.dir.mkdir(parents=True)
    provider.serial.write_text("[    3.62] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n"
                                "[    6.17] ---[ end Kernel panic - not syncing: Fatal exception ]---\n")
    monkeypatch.setattr(QemuProvider, "pid", lambda self: 4242)
    monkeypatch.setattr(QemuProvider, "down", lambda self: None)
    endpoint = Endpoint(host="127.0.0.1", port=1, user="root", key="")
    with pytest.raises(LabError, match=r"^the guest kernel panicked while booting \(tcg\); serial log: "):
        provider._wait_for_ssh(endpoint, "tcg")
