"""End to end on the compose runtime: the seed's own stack (labs/seed-compose.toml) deployed as a Docker
compose project on the session's VM, twice (the second changes nothing), then a resolver container
crashed three times under load through Docker's embedded DNS, the report's figures asserted, and a
teardown that leaves no container, link, rule or IPVS service behind.

Marked `last`: it replaces the session VM's systemd stack (deploy retires the other runtime), so
tests/e2e/conftest.py runs it after every other test of the session.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.execute import run_experiment
from lab.model.parse import load_lab
from lab.ops.deploy import deploy, teardown
from lab.ops.status import read_status
from lab.ssh.endpoint import connect
from tests.conftest import REPO
from tests.e2e.conftest import few_crashes

pytestmark = [pytest.mark.e2e, pytest.mark.last]
COMPOSE_LAB = REPO / "labs" / "seed-compose.toml"
CRASHES = 3


@pytest.fixture(scope="module")
def compose(lab_vm, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Deploy twice, crash a resolver container three times, read the status, tear down."""
    work = tmp_path_factory.mktemp("compose")
    out: dict = {}
    lab = load_lab(COMPOSE_LAB)
    with pytest.MonkeyPatch.context() as mp, connect(lab_vm[1]) as conn:
        conn.config.run.in_stream = False
        mp.setenv("DNSLAB_RUNS", str(work / "runs"))
        out["deploy"] = deploy(lab, conn, verbose=False)
        out["again"] = deploy(lab, conn, verbose=False)
        out["status"] = read_status(lab, conn)
        out["kill"] = run_experiment(lab, conn, str(few_crashes(work, "kill-one-of-two", CRASHES)))
        out["down"] = teardown(lab, conn, verbose=False)
        out["left"] = conn.run("docker ps -aq 2>/dev/null; systemctl is-active docker.service; "
                               "ip -br link show dnsnet-host 2>&1; ipvsadm -Ln | grep -c '^UDP'; "
                               "iptables -t nat -S POSTROUTING | grep -c SNAT", warn=True, hide=True).stdout
    print(f"\ncompose deploy {out['deploy'].seconds:.1f} s, again {out['again'].seconds:.1f} s")
    return out


def summary(run_dir: Path) -> dict:
    return json.loads(subprocess.run([sys.executable, "-m", "reports", str(run_dir)], check=True,
                                     capture_output=True, text=True).stdout)


def test_compose_deploys_and_redeploys_without_change(compose):
    assert not compose["deploy"].failed, compose["deploy"].error
    assert compose["again"].changed == 0 and not compose["again"].failed, compose["again"].changed_steps()


def test_status_shows_the_containers_and_ipvs(compose):
    status = compose["status"]
    assert status["runtime"] == "compose"
    assert status["units"] == {"rs1": "running", "rs2": "running", "keepalived": "running"}, status["units"]
    (udp,) = status["ipvs"]
    assert {rs["real_server"] for rs in udp["real_servers"]} == {"192.168.100.2:53", "192.168.100.3:53"}


def test_a_crashed_resolver_container_has_its_fault_figures(compose):
    s = summary(compose["kill"])
    stats = s["fault_stats"]["kill_resolver"]
    assert stats["n"] == CRASHES, stats
    window = stats["failover_window_ms"]
    assert window["median"] is not None and window["min"] <= window["median"] <= window["max"], window
    assert stats["detection_ms"]["median"] is not None, "Keepalived removed the dead resolver from IPVS"
    meta = json.loads((compose["kill"] / "meta.json").read_text())
    assert meta["lab"]["stack"]["runtime"] == "compose", meta["lab"].get("stack")
    assert meta["lab"]["load"]["nameservers"] == ["docker"]  # through Docker's embedded DNS


def test_teardown_leaves_nothing_behind(compose):
    assert not compose["down"].failed, compose["down"].error
    lines = compose["left"].split("\n")
    assert lines[0] in ("inactive", "failed"), compose["left"]  # no container listed: docker is down
    assert "does not exist" in compose["left"], compose["left"]  # dnsnet-host
    assert lines[-3:-1] == ["0", "0"], compose["left"]  # no IPVS service, no SNAT rule
