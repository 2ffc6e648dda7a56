"""End-to-end fixtures: ONE lab VM for the whole test session.

- `lab_vm` (session scope) builds or reuses the lab image (the shared cache: $DNSLAB_CACHE, else
  .lab/cache), boots one qemu VM with its own state directory under pytest's tmp (exported as
  $DNSLAB_STATE for the session, so `fab` subprocesses and `get_provider(lab)` find the same VM) and
  yields `(lab, endpoint)`. At session end it stops the VM and asserts that no qemu of it is left.
- `quick_demo` (session scope) runs `fab demo --suite quick` once on that VM, its runs in a temporary
  directory: test_demo asserts on its answers page, test_chaos on its suite's cells.
- `conn` (function scope) is a fabric Connection to that VM, closed after the test. It never reads
  local stdin (`in_stream=False`): under pytest's output capture, reading stdin raises in invoke's
  stdin thread and fails every command.

Usage, in any tests/e2e/test_*.py:

    @pytest.mark.e2e
    def test_something(lab_vm, conn):
        lab, endpoint = lab_vm
        assert conn.run("ipvsadm -Ln", warn=True).ok

The VM is shared: leave it as you found it (tear down what you deploy, or deploy idempotently).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from chaos.experiment import EXPERIMENTS_DIR
from lab.model.config import Lab
from lab.model.parse import load_lab
from lab.providers.qemu import QemuProvider
from lab.ssh.endpoint import Endpoint, connect
from tests.conftest import REPO


def qemu_pids_using(path: Path) -> list[int]:
    """PIDs of live qemu processes whose command line mentions `path` (e.g. a VM's overlay)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"qemu-system-x86_64") and any(str(path).encode() in a for a in args):
            pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="session")
def lab_vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Endpoint]]:
    state = tmp_path_factory.mktemp("lab-state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNSLAB_STATE", str(state))
        lab = load_lab()
        provider = QemuProvider(lab)
        start = time.monotonic()
        endpoint = provider.up()
        print(f"\nlab VM up in {time.monotonic() - start:.0f} s at {endpoint.host}:{endpoint.port} "
              f"(state {state})")
        try:
            yield lab, endpoint
        finally:
            overlay = provider.overlay
            provider.down()
            assert qemu_pids_using(overlay) == [], f"qemu of {overlay} still running after down()"
            assert not provider.pidfile.exists() and not provider.endpoint_file.exists()
            assert os.environ["DNSLAB_STATE"] == str(state)


@pytest.fixture
def conn(lab_vm: tuple[Lab, Endpoint]):
    """A fabric Connection to the session's lab VM."""
    _, endpoint = lab_vm
    with connect(endpoint) as connection:
        connection.config.run.in_stream = False
        yield connection


@pytest.fixture(scope="session")
def quick_demo(lab_vm, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """`fab demo --suite quick` on the session VM: (the finished process, its answers page)."""
    runs = tmp_path_factory.mktemp("demo") / "runs"
    env = {**os.environ, "DNSLAB_RUNS": str(runs)}
    fab = str(Path(REPO) / ".venv" / "bin" / "fab")
    proc = subprocess.run([fab, "demo", "--suite", "quick"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1500)
    return proc, runs.parent / "index.html"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests (their own VM, e.g. the trixie guest) first: their module-scoped VM is down before
    the session's lab VM boots, so at most one VM runs at a time. Tests marked `last` (they switch the
    session VM to the compose runtime) after every other."""
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None,
                                 item.get_closest_marker("last") is not None))


def few_crashes(directory: Path, experiment: str, times: int) -> Path:
    """A copy of a repeated experiment with `times` crashes instead of its own count (same name, so the
    reports treat it alike)."""
    data = yaml.safe_load((EXPERIMENTS_DIR / f"{experiment}.yaml").read_text())
    data["extensions"][0]["repeat"]["times"] = times
    path = directory / f"{experiment}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
