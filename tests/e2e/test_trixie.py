"""End to end on the second guest release: Debian 13 (trixie, kernel 6.12, Keepalived 2.3, Unbound
1.26). Boots its own VM from labs/trixie.toml (its own image cache entry and state directory), deploys
(the configs checked by the guest's own keepalived -t and unbound-checkconf), crashes a resolver three
times and runs the sysctl-namespace probe.

Marked `slow`: `make test` deselects it (the full suite must stay under 30 min and the session VM is
bookworm's); run it with `flock /work/locks/vm .venv/bin/pytest -m slow tests/e2e/test_trixie.py`.
tests/e2e/conftest.py runs slow tests first, so this VM is down before the session's bookworm VM boots.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaos.execute import run_experiment
from lab.model.parse import load_lab
from lab.ops.deploy import deploy
from lab.providers.qemu import QemuProvider
from lab.ssh.endpoint import connect
from tests.conftest import REPO
from tests.e2e.conftest import few_crashes, qemu_pids_using

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TRIXIE_LAB = REPO / "labs" / "trixie.toml"
CRASHES = 3  # kill-one's five, cut to three: the figures exist and have a spread, in less time


@pytest.fixture(scope="module")
def trixie(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Boot, deploy twice, kill-one and the sysctl probe on a trixie VM; the VM is down afterwards."""
    state = tmp_path_factory.mktemp("trixie-state")
    work = tmp_path_factory.mktemp("trixie")
    out: dict = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNSLAB_STATE", str(state))
        mp.setenv("DNSLAB_RUNS", str(work / "runs"))
        lab = load_lab(TRIXIE_LAB)
        provider = QemuProvider(lab)
        start = time.monotonic()
        endpoint = provider.up()
        out["up_s"] = time.monotonic() - start
        try:
            with connect(endpoint) as conn:
                conn.config.run.in_stream = False
                out["deploy"] = deploy(lab, conn, verbose=False)
                out["again"] = deploy(lab, conn, verbose=False)
                out["kill"] = run_experiment(lab, conn, str(few_crashes(work, "kill-one", CRASHES)))
                out["probe"] = run_experiment(lab, conn, "sysctl-namespaces")
        finally:
            overlay = provider.overlay
            provider.down()
            assert qemu_pids_using(overlay) == [], f"qemu of {overlay} still running after down()"
    print(f"\ntrixie VM up in {out['up_s']:.0f} s, deploy {out['deploy'].seconds:.1f} s")
    return out


def summary(run_dir: Path) -> dict:
    return json.loads(subprocess.run([sys.executable, "-m", "reports", str(run_dir)], check=True,
                                     capture_output=True, text=True).stdout)


def test_trixie_deploys_with_its_own_tools_and_idempotently(trixie):
    assert not trixie["deploy"].failed, trixie["deploy"].error
    assert trixie["again"].changed == 0 and not trixie["again"].failed, trixie["again"].changed_steps()


def test_meta_records_the_trixie_guest(trixie):
    guest = json.loads((trixie["kill"] / "meta.json").read_text())["guest"]
    assert guest["release"] == "trixie"
    assert guest["kernel"].startswith("6.12"), guest
    assert re.fullmatch(r"2\.3\.\d+", guest["keepalived"]), guest
    assert re.fullmatch(r"1\.26\.\d+", guest["unbound"]), guest
    assert re.fullmatch(r"\d+\.\d+", guest["ipvsadm"]), guest


def test_kill_one_on_trixie_has_its_fault_figures(trixie):
    s = summary(trixie["kill"])
    stats = s["fault_stats"]["kill_resolver"]
    assert stats["n"] == CRASHES, stats
    window = stats["failover_window_ms"]
    assert window["median"] is not None and window["min"] <= window["median"] <= window["max"], window
    assert stats["detection_ms"]["median"] is not None, "Keepalived removed the dead resolver from IPVS"
    assert "Debian trixie" in (trixie["kill"] / "report.html").read_text()


def test_sysctl_probe_on_trixie_covers_all_three_cases(trixie):
    (found,) = trixie["probe"].glob("probe_*.json")
    probe = json.loads(found.read_text())
    assert probe["kernel"].startswith("6.12")
    summary_ = probe["summary"]
    assert summary_["total_in_init"] > 0
    for case in ("init", "child_init_userns", "child_unpriv_userns"):
        assert set(summary_[case]) >= {"exist", "writable", "leaking"}, case
    assert summary_["init"]["exist"] == summary_["total_in_init"]
