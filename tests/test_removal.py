"""Removal on exit: its settings, the rendered units and Keepalived blocks (checked by the real
keepalived -t and systemd-analyze verify), the version check before deploy, and the exit watcher on
real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.__main__ import main as lab_main
from lab.model.errors import LabError
from lab.model.layout import EXIT_WATCHER, KEEPALIVED_UNIT, RESOLVER_DROPIN, RESOLVER_UNIT, exit_file
from lab.model.parse import load_lab, parse_lab, with_overrides
from lab.model.removal import keepalived_version, require_support, track_file_name
from lab.ops.deploy import deploy
from lab.ops.services import service_steps
from lab.ops.validate import check_keepalived, check_units
from lab.render.files import render_files, render_keepalived, render_resolver_dropin

REPO = Path(__file__).resolve().parent.parent
WATCHER = REPO / "lab" / "guest" / "dnslab-exit-watch.py"


@pytest.fixture
def lab(raw_lab):
    return parse_lab(raw_lab, "lab.toml")


@pytest.fixture
def on(lab):
    return with_overrides(lab, {"check": {"removal_on_exit": True}})


def test_off_by_default_and_a_bool(lab, raw_lab):
    assert lab.check.removal_on_exit is False and lab.check.quorum == 1
    raw_lab["check"]["removal_on_exit"] = "yes"
    with pytest.raises(LabError, match=r"^lab.toml: \[check\] removal_on_exit: must be true or false "
                                       r"\(unquoted\), got 'yes'; write e.g. removal_on_exit = true$"):
        parse_lab(raw_lab, "lab.toml")


def test_quorum_0_is_one_line_naming_the_key_and_the_fix(raw_lab):
    raw_lab["check"]["quorum"] = 0
    with pytest.raises(LabError, match=r"^lab.toml: \[check\] quorum: Keepalived accepts 1 or more, got 0 "
                                       r"\(it rejects quorum 0 .*use 1$"):
        parse_lab(raw_lab, "lab.toml")


def test_keepalived_rejects_quorum_0_itself(lab, tmp_path):
    """Why the setting refuses 0: Keepalived 2.2.7's own config test fails on it."""
    text = render_keepalived(lab).replace("quorum 1", "quorum 0")
    with pytest.raises(LabError, match=r"Quorum 0 must be in \[1, 4294967295\]"):
        check_keepalived(text, "lab.toml")


@pytest.mark.parametrize("check", ["DNS_CHECK", "MISC_CHECK", "TCP_CHECK"])
@pytest.mark.parametrize("inhibit", [False, True])
def test_keepalived_t_accepts_removal_on_exit(on, check, inhibit):
    variant = with_overrides(on, {"check": {"type": check, "inhibit_on_failure": inhibit, "quorum": 2},
                                  "network": {"keepalived_netns": "lb"}})
    check_keepalived(render_keepalived(variant), "lab.toml")  # raises with the tool's message


def test_keepalived_watches_each_resolvers_exit_file_in_every_virtual_server(on, lab):
    text = render_keepalived(on)
    for r in on.resolvers:
        block = f'track_file {track_file_name(r.name)} {{\n    file "{exit_file(r.name)}"\n    weight 0\n}}'
        assert block in text
        assert text.count(f"track_file {track_file_name(r.name)}\n") == len(on.ipvs.protocols)
    assert text.count("FILE_CHECK {") == len(on.resolvers) * len(on.ipvs.protocols)
    assert text.count("quorum 1") == len(on.ipvs.protocols)
    off = render_keepalived(lab)
    assert "track_file" not in off and "FILE_CHECK" not in off
    assert "lvs_notify_fifo /run/dnslab/lvs-notify.fifo" in off  # detect events, with or without it


def test_the_drop_in_and_the_units_pass_systemd_analyze_verify(on, lab):
    for variant in (on, lab):
        check_units(render_files(variant), "rs1", "lab.toml")  # raises on any warning


def test_systemd_analyze_verify_reads_the_drop_in(on):
    """The check can fail: a drop-in naming a missing program is reported."""
    files = dict(render_files(on))
    broken = render_resolver_dropin(on).replace("ExecStopPost=/bin/sh", "ExecStopPost=/nonexistent/sh")
    files[RESOLVER_DROPIN] = type(files[RESOLVER_DROPIN])(broken.encode())
    with pytest.raises(LabError, match=r"systemd-analyze verify rejects the units: .*/nonexistent/sh"):
        check_units(files, "rs1", "lab.toml")


def test_drop_in_reports_start_and_every_kind_of_exit(on, lab):
    text = render_resolver_dropin(on)
    assert f"ExecStartPost=/bin/sh -c '{EXIT_WATCHER} /run/dnslab/exit/%i.down \"$$MAINPID\" &'" in text
    assert ("ExecStop=/bin/sh -c 'echo 1 > /run/dnslab/exit/%i.down; "
            "[ -z \"$$MAINPID\" ] || sleep 0.3'") in text
    assert "ExecStopPost=/bin/sh -c 'echo 1 > /run/dnslab/exit/%i.down'" in text
    assert "Exec" not in render_resolver_dropin(lab)  # off: a drop-in that changes nothing
    files = render_files(on)
    assert "Type=notify" in files[RESOLVER_UNIT].content.decode()  # ExecStartPost runs once Unbound listens
    assert "mkfifo -m 0600 /run/dnslab/lvs-notify.fifo" in files[KEEPALIVED_UNIT].content.decode()
    assert files[EXIT_WATCHER].mode == 0o755 and files[EXIT_WATCHER].content == WATCHER.read_bytes()


def test_deploy_syncs_the_exit_files_before_keepalived_reads_them(on, lab):
    names = [s.name for s in service_steps(on, render_files(on))]
    sync = names.index("removal on exit: every resolver's status file matches its unit")
    assert names.index("resolver rs3: dnslab-resolver@rs3.service running") < sync
    assert sync < next(i for i, n in enumerate(names) if n.startswith("keepalived:"))
    assert not any("status file" in s.name for s in service_steps(lab, render_files(lab)))


def test_resolvers_restart_when_removal_on_exit_is_switched(on, lab):
    """Its watcher starts with the resolver, so switching the setting restarts the resolvers."""
    def resolver_markers(model):
        return [s.apply for s in service_steps(model, render_files(model)) if s.name.startswith("resolver ")]

    assert resolver_markers(on) != resolver_markers(lab)


def test_render_cli_shows_the_fast_failover_lab(tmp_path, capsys):
    fast_file = str(REPO / "labs" / "fast-failover.toml")
    assert lab_main(["render", "--lab", fast_file, "--out", str(tmp_path)]) == 0
    dropin = tmp_path / RESOLVER_DROPIN.lstrip("/")
    assert "ExecStartPost=" in dropin.read_text()
    assert "FILE_CHECK" in (tmp_path / "etc/keepalived/keepalived.conf").read_text()
    assert os.access(tmp_path / EXIT_WATCHER.lstrip("/"), os.X_OK)
    fast = load_lab(REPO / "labs" / "fast-failover.toml")
    assert fast.check.removal_on_exit and fast.check == with_overrides(
        load_lab(REPO / "lab.toml"), {"check": {"removal_on_exit": True}}).check


@pytest.mark.parametrize(("text", "version"), [
    ("Keepalived v2.2.7 (01/16,2022)\n", (2, 2, 7)), ("Keepalived v2.3.3 (02/02,2025)", (2, 3, 3)),
    ("bash: keepalived: command not found", None)])
def test_keepalived_version(text, version):
    assert keepalived_version(text) == version


def test_require_support_names_the_key_and_the_fix(on, lab):
    require_support(on, "Keepalived v2.1.0 (05/07,2020)")
    require_support(lab, "Keepalived v1.3.5")  # off: any version
    with pytest.raises(LabError, match=r"^lab.toml: \[check\] removal_on_exit: needs Keepalived 2.1.0 or "
                                       r"later \(track_file, FILE_CHECK\); the lab host has 2.0.20: upgrade "
                                       r"it or set removal_on_exit = false$"):
        require_support(on, "Keepalived v2.0.20 (01/22,2020)")
    with pytest.raises(LabError, match=r"removal_on_exit: .* said: bash: keepalived: command not found;"):
        require_support(on, "bash: keepalived: command not found")


class RecordingConnection:
    """Answers `keepalived --version` like an old host would, and records every command."""

    def __init__(self, version: str) -> None:
        self.version, self.commands = version, []

    def run(self, command: str, **_: object):
        self.commands.append(command)
        return subprocess.CompletedProcess(command, 0, stdout=self.version if "--version" in command else "")

    def sftp(self):  # pragma: no cover - must never be reached
        raise AssertionError("nothing may be uploaded")


def test_deploy_refuses_an_old_keepalived_before_changing_anything(on):
    conn = RecordingConnection("Keepalived v2.0.20 (01/22,2020)\n")
    with pytest.raises(LabError, match=r"\[check\] removal_on_exit: needs Keepalived 2.1.0"):
        deploy(on, conn)
    # only reads: the guest's release (deploy's first check), then Keepalived's version
    assert conn.commands == ['. /etc/os-release 2>/dev/null; echo "$VERSION_CODENAME"',
                             "keepalived --version 2>&1 | head -1"]


# --- the exit watcher, on real processes --------------------------------------------------------------

def wait_for(path: Path, value: str, timeout_s: float = 10.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if path.exists() and path.read_text() == value:
            return time.monotonic() - start
        time.sleep(0.002)
    raise AssertionError(f"{path} never read {value!r} (has {path.read_text() if path.exists() else None!r})")


@pytest.mark.parametrize("signal_name", ["KILL", "TERM"])
def test_exit_watcher_marks_ready_then_gone_the_instant_the_process_exits(tmp_path, signal_name):
    status = tmp_path / "exit" / "rs9.down"
    target = subprocess.Popen(["sleep", "60"])
    watcher = subprocess.Popen([sys.executable, str(WATCHER), str(status), str(target.pid)])
    try:
        wait_for(status, "0\n")
        assert watcher.poll() is None, "it keeps watching"
        subprocess.run(["kill", f"-{signal_name}", str(target.pid)], check=True)
        took = wait_for(status, "1\n")
        assert watcher.wait(timeout=5) == 0
        assert took < 0.5, f"{took:.3f} s from the exit to the mark"
    finally:
        target.kill()
        watcher.kill()
        target.wait()


def test_exit_watcher_on_a_process_already_gone_marks_it_gone(tmp_path):
    status = tmp_path / "rs9.down"
    gone = subprocess.Popen(["true"])
    gone.wait()
    watch = [sys.executable, str(WATCHER), str(status)]
    assert subprocess.run([*watch, str(gone.pid)], timeout=10).returncode == 0
    assert status.read_text() == "1\n"
    bad = subprocess.run(watch, capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "usage: dnslab-exit-watch FILE PID" in bad.stderr
