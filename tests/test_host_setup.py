"""`make setup`'s host script (lab/host_setup.sh) on real commands: root, apt and pip faults.

Offline cases run in a private mount namespace whose apt sources are empty bind mounts, so
`apt-get update` contacts nothing; apt's lists and cache there are empty temporary directories.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "lab" / "host_setup.sh"
FIX_MIRROR = ("add a Debian 12 (bookworm) mirror to /etc/apt/sources.list(.d), run apt-get update, "
              "then make setup again")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the script as root, as CI runs make test")


def _offline_pip_env(tmp_path: Path) -> dict[str, str]:
    """The environment with pip pointed at an empty wheel directory and no index: it fails fast, offline."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return env | {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}


def _error_line(stderr: str) -> str:
    """The script's only stderr line, asserting there is exactly one and it is ours."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("dnslab: error: "), stderr
    return lines[0]


def _can_unshare_mounts() -> bool:
    """True when this process may create a private mount namespace and bind-mount in it."""
    if not shutil.which("unshare"):
        return False
    probe = "mount --bind /tmp /mnt"
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", probe],
                          capture_output=True).returncode == 0


def _run_without_sources(tmp_path: Path, packages: list[str], *, empty_dpkg: bool = False,
                         local_source: str = ""):
    """Run the script where apt has no network package source: none, or only `local_source` (a file: line).

    With `empty_dpkg`, dpkg knows no installed package either: a machine with nothing installed.
    """
    if not _can_unshare_mounts():
        pytest.skip("unshare --mount with bind mounts is not permitted here; cannot hide the apt sources")
    for name in ("parts", "lists/partial", "cache"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "empty").write_text("")
    (tmp_path / "parts" / "local.list").write_text(local_source)
    binds = [(tmp_path / "parts", "/etc/apt/sources.list.d"), (tmp_path / "lists", "/var/lib/apt/lists"),
             (tmp_path / "cache", "/var/cache/apt")]
    if Path("/etc/apt/sources.list").exists():
        binds.append((tmp_path / "empty", "/etc/apt/sources.list"))
    if empty_dpkg:
        binds.append((tmp_path / "empty", "/var/lib/dpkg/status"))
    mounts = "".join(f"mount --bind {src} {dst} || exit 99\n" for src, dst in binds)
    # Guard: run the script only if every index apt would fetch is a local file, so nothing leaves the host.
    targets = "apt-get indextargets --no-release-info --format '$(URI)'"
    guard = f'[ -z "$({targets} | grep -v ^file:)" ] || {{ echo "apt sources visible" >&2; exit 99; }}\n'
    inner = mounts + guard + 'exec bash "$0" "$@"\n'
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", inner,
                             str(SCRIPT), "--venv", str(tmp_path / "venv"), *packages],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 99, result.stderr
    return result


def test_non_root_is_told_to_use_sudo(tmp_path: Path) -> None:
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    venv = tmp_path / "venv"
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    # The script comes on stdin and the cwd is /, so nobody needs no access to the checkout or tmp_path.
    with SCRIPT.open() as script:
        result = subprocess.run([*as_nobody, "bash", "-s", "--", "--venv", str(venv), "--retry", "make demo",
                                 "bash", "dnslab-no-such-package"],
                                stdin=script, cwd="/", capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert _error_line(result.stderr) == (
        "dnslab: error: setup installs Debian packages (qemu, unbound, ...) and needs root; "
        "run: sudo make demo")
    assert result.stdout == ""
    assert not venv.exists()


def test_without_apt_debian_12_is_named(tmp_path: Path) -> None:
    result = subprocess.run([shutil.which("bash"), str(SCRIPT), "bash"], env={"PATH": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "needs Debian 12 (bookworm)" in _error_line(result.stderr)


def test_complete_host_skips_apt_and_pip_failure_is_explained(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = subprocess.run(["bash", str(SCRIPT), "--venv", str(venv), "bash", "coreutils"],
                            env=_offline_pip_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.stdout.splitlines() == ["==> host packages: all 2 present",
                                          f"==> installing Python packages into {venv}"]
    assert result.returncode == 2
    line = _error_line(result.stderr)
    assert line.startswith(
        "dnslab: error: pip could not install dnslab's Python packages (PyPI unreachable?); "
        "set PIP_INDEX_URL or PIP_FIND_LINKS to a reachable index or wheel directory "
        "and run make setup again")
    assert " (ERROR: " in line  # pip's own last error line, e.g. the build backend it could not fetch
    assert (venv / "bin" / "python").exists()


def test_missing_package_without_source_names_it_and_the_mirror_fix(tmp_path: Path) -> None:
    result = _run_without_sources(tmp_path, ["bash", "dnslab-no-such-package"])
    assert result.stdout.splitlines() == ["==> installing 1 missing host packages: dnslab-no-such-package",
                                          "==> apt-get update"]
    assert result.returncode == 2
    assert _error_line(result.stderr) == ("dnslab: error: dnslab-no-such-package is missing and no package "
                                          f"source offers it; {FIX_MIRROR}")
    assert not (tmp_path / "venv").exists()


def test_machine_without_qemu_or_source_is_told_the_vm_needs_it(tmp_path: Path) -> None:
    packages = ["bash", "coreutils", "iproute2", "qemu-system-x86", "unbound"]
    result = _run_without_sources(tmp_path, packages, empty_dpkg=True)
    assert result.stdout.splitlines()[0] == f"==> installing 5 missing host packages: {' '.join(packages)}"
    assert result.returncode == 2
    assert _error_line(result.stderr) == (
        "dnslab: error: qemu-system-x86, bash, coreutils and 2 more packages are missing and no package "
        f"source offers them (without qemu-system-x86 the lab VM cannot run); {FIX_MIRROR}")


def test_failing_apt_update_is_named_with_apts_error(tmp_path: Path) -> None:
    source = "deb [trusted=yes] file:/nonexistent-dnslab-mirror bookworm main\n"
    result = _run_without_sources(tmp_path, ["bash", "dnslab-no-such-package"], local_source=source)
    assert result.returncode == 2
    line = _error_line(result.stderr)
    assert line.startswith("dnslab: error: dnslab-no-such-package is missing and apt-get update failed (E: ")
    assert line.endswith(f"; {FIX_MIRROR}")


def _run_with_systemd(tmp_path: Path, packages: list[str], *, newly_installed: tuple[str, ...] = ()):
    """Run the script where systemd looks up (a private tmpfs /run with /run/systemd/system) and
    `systemctl` is a stand-in that logs its arguments. With `newly_installed`, dpkg-query does not list
    those packages and apt-get / apt-cache are stand-ins that "install" them, touching nothing."""
    if not _can_unshare_mounts():
        pytest.skip("unshare --mount with bind mounts is not permitted here")
    bindir, log = tmp_path / "bin", tmp_path / "systemctl.log"
    bindir.mkdir()
    stubs = {"systemctl": f'echo "$*" >> {log}'}
    if newly_installed:
        hidden = "|".join(newly_installed)
        stubs["dpkg-query"] = f"/usr/bin/dpkg-query \"$@\" | grep -vE ' ({hidden})$'"
        stubs["apt-get"] = "exit 0"
        stubs["apt-cache"] = 'shift; for p in "$@"; do printf "%s:\\n  Candidate: 1.0\\n" "$p"; done'
    for name, body in stubs.items():
        (bindir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bindir / name).chmod(0o755)
    inner = 'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec bash "$0" "$@"'
    env = _offline_pip_env(tmp_path) | {"PATH": f"{bindir}:{os.environ['PATH']}"}
    argv = ["unshare", "--mount", "--propagation", "private", "bash", "-c", inner, str(SCRIPT),
            "--venv", str(tmp_path / "venv"), *packages]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert "pip could not install" in result.stderr, result.stderr  # the run went past the services
    return log.read_text().splitlines() if log.exists() else []


def test_services_the_host_already_had_are_left_alone(tmp_path: Path) -> None:
    """unbound and keepalived installed before `make setup` are the host's own: never stopped or disabled."""
    if not shutil.which("unbound") or not shutil.which("keepalived"):
        pytest.skip("needs unbound and keepalived installed on the host")
    assert _run_with_systemd(tmp_path, ["bash", "unbound", "keepalived"]) == []


def test_services_this_setup_installed_are_stopped_and_disabled(tmp_path: Path) -> None:
    if not shutil.which("unbound") or not shutil.which("keepalived"):
        pytest.skip("needs unbound and keepalived installed on the host")
    calls = _run_with_systemd(tmp_path, ["bash", "unbound", "keepalived"], newly_installed=("unbound",))
    assert calls == ["disable --now unbound"]
