"""End to end with the vagrant provider (vagrant-libvirt, TCG), through the Fabric tasks as a user runs
them: `fab up --provider vagrant`, then `fab info`, `fab deploy`, `fab chaos --experiment kill-one`
and `fab report` without --provider (the provider is remembered), then `fab down`, which must leave
nothing behind: no qemu, libvirtd, virtlogd, dnsmasq, forwarder or namespace.

It boots its own VM (not the session's qemu one). Every task logs in as root with the lab's own
key; the box's vagrant user cannot write root's files and is refused with "permission denied", and
Vagrant's public insecure key no longer opens the VM once `vagrant up` is done.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest

from lab.model.config import REPO_ROOT
from lab.model.errors import LabError
from lab.model.parse import load_lab, with_overrides
from lab.providers.vagrant.box import VAGRANT_KEY_GLOB
from lab.providers.vagrant.provider import NETNS, VagrantProvider
from lab.ssh import remote
from lab.ssh.endpoint import Endpoint, connect

pytestmark = [pytest.mark.e2e, pytest.mark.vagrant]

FAB = [sys.executable, "-m", "fabric"]
LIBVIRT_NET = "192.168.121."  # vagrant-libvirt's management network, inside the namespace only
TCG_SLACK_S = 3.0  # check timers stretch under TCG (as in test_chaos)


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


class Fab:
    """`fab TASK ...` in the repo root with the test's own state and runs directories; times each task."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.seconds = env, {}

    def __call__(self, *args: str, ok: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        start = time.monotonic()
        done = subprocess.run([*FAB, *args], cwd=REPO_ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        self.seconds.setdefault(" ".join(args), round(time.monotonic() - start))  # the first of each
        if ok:
            assert done.returncode == 0, f"fab {' '.join(args)}: {done.stderr[-2000:]}"
        return done


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnslab: error: "), done.stderr
    return lines[0].removeprefix("dnslab: error: ")


def check_the_vagrant_user_cannot_act_as_root(provider: VagrantProvider, endpoint: Endpoint) -> None:
    vagrants_key = next(provider.dir.glob("dotvagrant/machines/default/libvirt/private_key"))
    as_vagrant = dataclasses.replace(endpoint, user="vagrant", key=str(vagrants_key))
    with connect(as_vagrant) as conn:
        with pytest.raises(LabError, match=r"^cannot write /etc/dnslab/e2e in the lab host as vagrant: "
                                           r"permission denied; dnslab works there as root$"):
            remote.upload(conn, {"/etc/dnslab/e2e": b"x"})
        with pytest.raises(LabError, match=r"logs vagrant@127\.0\.0\.1:\d+ in as uid 1000, not root"):
            remote.require_root(conn)
    insecure = sorted(Path("/").glob(VAGRANT_KEY_GLOB.lstrip("/").removesuffix(".pub")))[-1]
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    with pytest.raises(paramiko.AuthenticationException):  # `vagrant up` replaced it with a key of its own
        client.connect(endpoint.host, endpoint.port, username="vagrant", allow_agent=False,
                       look_for_keys=False, pkey=paramiko.RSAKey.from_private_key_file(str(insecure)))
    client.close()


def test_vagrant_lab_up_deploy_chaos_report_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    state, runs = tmp_path / "state", tmp_path / "runs"
    monkeypatch.setenv("DNSLAB_STATE", str(state))
    fab = Fab({**os.environ, "DNSLAB_STATE": str(state), "DNSLAB_RUNS": str(runs)})
    provider = VagrantProvider(with_overrides(load_lab(), {"vm": {"provider": "vagrant"}}))
    members: dict[int, str] = {}
    try:
        fab("up", "--provider", "vagrant")
        info = json.loads(fab("info", "--json").stdout)  # no --provider: remembered
        assert info["provider"] == "vagrant" and info["endpoint"].startswith("root@127.0.0.1:")
        assert info["kernel"].endswith("-amd64") and Path(info["image"]).exists()
        endpoint = provider.endpoint()
        assert endpoint.user == "root" and endpoint.key == str(state / "ssh" / "id_ed25519")

        with connect(endpoint) as conn:
            guest = conn.run("id -un; ip -4 -br addr show eth0", hide=True).stdout.split("\n")
        assert guest[0] == "root"
        assert LIBVIRT_NET in guest[1]  # the guest's address is libvirt's private one...
        assert LIBVIRT_NET not in host_addresses()  # ...which the host itself never has
        check_the_vagrant_user_cannot_act_as_root(provider, endpoint)

        assert "already up" in one_line_error(fab("up", "--provider", "vagrant", ok=False))
        assert one_line_error(fab("up", "--provider", "qemu", ok=False)).startswith(
            "a vagrant lab is up; `fab down` stops it")

        fab("deploy")
        run_dir = Path(fab("chaos", "--experiment", "kill-one").stdout.strip().splitlines()[-1])
        assert run_dir.parent == runs and (run_dir / "queries.csv").is_file()
        summary = json.loads(fab("report", "--run", str(run_dir)).stdout)
        assert (run_dir / "report.html").is_file()
        kill = next(f for f in summary["faults"] if f["action"] == "kill_resolver")
        stats = summary["fault_stats"]["kill_resolver"]  # five crashes, rotating the resolver
        print(f"\nvagrant kill-one: failover window {stats['failover_window_ms']} ms, "
              f"failed {stats['failed']}, detection {stats['detection_ms']} ms, {summary['queries']} queries")
        assert kill["target"] == "rs2" and stats["n"] == 5 and stats["detection_ms"]["n"] >= 3
        bound_s = load_lab().check.removal_bound_s + TCG_SLACK_S
        assert stats["detection_ms"]["median"] <= bound_s * 1000, "Keepalived removes them within the bound"
        failed = sum(f["failed"] for f in summary["faults"])
        assert stats["failed"]["median"] > 0 and failed < summary["queries"] * 0.2
        assert "rs2" in fab("status").stdout

        members = {pid: comm(pid) for pid in provider.netns.member_pids()}
        assert {"libvirtd", "virtlogd", "dnsmasq", "qemu-system-x86"} <= set(members.values()), members
    finally:
        fab("down", ok=False)
        print(f"fab task seconds: {fab.seconds}")
        provider.down()  # a no-op after `fab down`; the safety net when the test failed before it

    assert not Path(f"/run/netns/{NETNS}").exists()
    assert [pid for pid in members if alive(pid)] == []
    assert not Path("/etc/libvirt/qemu/dnslab_default.xml").exists()  # the domain is undefined
    assert not Path("/run/libvirt/network/dnslab-vagrant.pid").exists()
    assert not (state / "provider").exists(), "`fab down` forgets the provider"
    assert one_line_error(fab("deploy", ok=False)).startswith("the qemu lab is not up")
