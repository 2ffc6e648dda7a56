"""Configs are checked with the guest release's own tools: this machine's when the guest runs its
Debian release, else in the guest (here a stand-in connection that runs the commands on this machine,
so the real keepalived -t and unbound-checkconf judge them)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.model.config import Lab
from lab.model.errors import LabError
from lab.model.layout import EXIT_DIR, KEEPALIVED_CONF
from lab.model.parse import load_lab, with_overrides
from lab.ops import validate
from lab.ops.services import deploy_steps
from lab.render.files import render_files
from lab.render.netplan import network_plan


class LocalGuest:
    """A Fabric-like connection whose commands and SFTP writes happen on this machine."""

    user, host, port = "root", "local", 22

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: str, **_: object) -> SimpleNamespace:
        self.commands.append(command)
        proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
        return SimpleNamespace(exited=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)

    def sftp(self) -> SimpleNamespace:
        return SimpleNamespace(putfo=lambda blob, path: Path(path).write_bytes(blob.read()))


@pytest.fixture
def lab() -> Lab:
    return load_lab()


@pytest.fixture
def guest(tmp_path, monkeypatch) -> LocalGuest:
    monkeypatch.setattr(validate, "GUEST_CHECK_DIR", str(tmp_path / "check"))
    return LocalGuest()


def test_host_release_reads_the_codename(tmp_path):
    path = tmp_path / "os-release"
    path.write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_CODENAME=trixie\n')
    assert validate.host_release(path) == "trixie"
    assert validate.host_release(tmp_path / "missing") == ""


def test_another_release_is_checked_in_the_guest_and_leaves_nothing_there(lab, guest, tmp_path, monkeypatch):
    monkeypatch.setattr(validate, "host_release", lambda: "bookworm")
    trixie = with_overrides(lab, {"vm": {"release": "trixie"}})
    validate.validate_for(trixie, render_files(trixie), guest)
    ran = " ".join(guest.commands)
    assert "keepalived --config-test" in ran and ran.count("unbound-checkconf") == len(lab.resolvers)
    assert not (tmp_path / "check").exists()


def test_the_guests_rejection_is_one_line_naming_the_file(lab, guest, monkeypatch):
    monkeypatch.setattr(validate, "host_release", lambda: "bookworm")
    trixie = with_overrides(lab, {"vm": {"release": "trixie"}})
    files = render_files(trixie)
    bad = files[KEEPALIVED_CONF].content.replace(b"lb_algo rr", b"lb_algo bogus", 1)
    files = {**files, KEEPALIVED_CONF: dataclasses.replace(files[KEEPALIVED_CONF], content=bad)}
    with pytest.raises(LabError, match=r"lab.toml: keepalived -t rejects keepalived.conf .*"
                                       r"Invalid lvs_scheduler 'bogus'") as err:
        validate.validate_for(trixie, files, guest)
    assert "\n" not in str(err.value)


def test_the_hosts_own_release_is_checked_here_without_the_guest(lab, monkeypatch):
    monkeypatch.setattr(validate, "host_release", lambda: lab.vm.release)
    guest = SimpleNamespace(run=None)  # any use of the guest would fail
    validate.validate_for(lab, render_files(lab), guest)


def test_keepalived_23_finds_every_track_file_in_the_guests_check(lab, guest, tmp_path, monkeypatch):
    """Keepalived 2.3 rejects a track_file whose file is missing: the copy watches files of its own,
    made in the scratch directory, and the live ones under /run are not touched."""
    monkeypatch.setattr(validate, "host_release", lambda: "bookworm")
    seen = {}
    real_run = guest.run

    def run(command: str, **kw: object) -> SimpleNamespace:
        if "keepalived --config-test" in command:
            exit_dir = tmp_path / "check" / "exit"
            seen["downs"] = sorted(p.name for p in exit_dir.iterdir())
            seen["conf"] = (tmp_path / "check" / "keepalived.conf").read_text()
        return real_run(command, **kw)

    guest.run = run
    on = with_overrides(lab, {"vm": {"release": "trixie"}, "check": {"removal_on_exit": True}})
    validate.validate_for(on, render_files(on), guest)
    assert seen["downs"] == [f"{r.name}.down" for r in lab.resolvers]
    assert f'file "{tmp_path}/check/exit/rs1.down"' in seen["conf"] and EXIT_DIR not in seen["conf"]


def test_deploy_makes_missing_exit_files_before_keepalived_tests_its_config(lab):
    on = with_overrides(lab, {"check": {"removal_on_exit": True}})
    files = render_files(on)
    (step,) = [s for s in deploy_steps(on, files, network_plan(on)) if s.name == f"file {KEEPALIVED_CONF}"]
    made = step.apply.index(f"[ -e {EXIT_DIR}/rs1.down ] || echo 1 > {EXIT_DIR}/rs1.down")
    assert made < step.apply.index("keepalived --config-test")
    (off,) = [s for s in deploy_steps(lab, render_files(lab), network_plan(lab))
              if s.name == f"file {KEEPALIVED_CONF}"]
    assert EXIT_DIR not in off.apply
