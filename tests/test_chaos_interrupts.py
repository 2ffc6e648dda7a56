"""Every kind of interruption rolls the run back, on a fake guest (tests/fakeguest.py) and fast:

- SIGINT, SIGTERM and SIGHUP during the fault: rollback, probes stopped, data kept, exit 128+n;
- a connection that drops mid-run is reconnected for the rollback; one that stays down ends the
  run in one line naming `fab recover`, with the pending undo on disk, and recovery finishes it;
- SIGKILL of the runner (another process): the next run's start undoes what it left;
- the undo is on disk before the fault runs; the guest's sampler stops by itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from chaos import link, recover
from chaos.experiment import load_experiment
from chaos.interrupts import Interrupted
from chaos.runner import Run, console
from chaos.undo_log import MARKER
from lab.local.state import RUN_INCOMPLETE
from lab.model.errors import LabError
from lab.model.parse import parse_lab
from tests.conftest import REPO
from tests.fakeguest import FakeGuest

EXPERIMENT = """\
title: kill rs2, stop rs1 a moment later, restart rs2 much later
extensions:
  - name: dnslab
    load: false
    timing: {warmup_s: 0, steady_s: 0, recover_s: 0}
method:
  - {type: action, name: kill rs2, pauses: {after: 0.3},
     provider: {type: python, module: chaos.ctk.actions, func: kill_resolver, arguments: {resolver: rs2}}}
  - {type: action, name: stop rs1, pauses: {after: 29.7},
     provider: {type: python, module: chaos.ctk.actions, func: stop_resolver, arguments: {resolver: rs1}}}
  - {type: action, name: restart rs2,
     provider: {type: python, module: chaos.ctk.actions, func: restart_resolver, arguments: {resolver: rs2}}}
rollbacks:
  - {type: action, name: ensure rs2,
     provider: {type: python, module: chaos.ctk.actions, func: start_resolver, arguments: {resolver: rs2}}}
"""
KILL_RS2 = "actions.sh signal systemd dnslab-resolver@rs2.service KILL"  # the fault's command ends so
QUIET = """\
title: nothing happens
extensions:
  - name: dnslab
    load: false
    timing: {warmup_s: 0, steady_s: 0, recover_s: 0}
method: []
"""


def _lab():
    return parse_lab(tomllib.loads((REPO / "lab.toml").read_text()))


def _experiment(path: Path, text: str = EXPERIMENT):
    path.write_text(text)
    return load_experiment(str(path), _lab())


@pytest.fixture
def env(tmp_path, monkeypatch):
    """runs/ and the lab state in tmp_path, no deploy, a short reconnect budget, the fake guest's file."""
    monkeypatch.setenv("DNSLAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DNSLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(Run, "deploy", lambda self: None)
    monkeypatch.setattr(link, "RECONNECT_BUDGET_S", 0.5)
    monkeypatch.setattr(console, "quiet", False)  # SIGHUP silences it
    return SimpleNamespace(tmp=tmp_path, state=tmp_path / "guest.json", runs=tmp_path / "runs",
                           exp=_experiment(tmp_path / "kill.yaml"))


def _wait_for(guest: FakeGuest, test, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if test(guest.load()):
            return
        time.sleep(0.02)
    raise AssertionError(f"the guest never got there: {guest.load()}")


def _meta(run_dir: Path) -> dict:
    return json.loads((run_dir / "meta.json").read_text())


def _events(run_dir: Path) -> list[tuple[str, str]]:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [(e["kind"], e["action"]) for e in map(json.loads, lines)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_during_the_faults_rolls_back_and_keeps_the_data(env, sig):
    guest = FakeGuest(env.state)

    def send_after_the_faults() -> None:
        _wait_for(guest, lambda s: s["stopped"] == ["rs1"])
        os.kill(os.getpid(), sig)

    threading.Thread(target=send_after_the_faults, daemon=True).start()
    handlers_before = signal.getsignal(sig)  # SIG_IGN when the suite runs as a background job
    run = Run(_lab(), guest, env.exp)
    with pytest.raises(Interrupted) as err:
        run.execute()
    name = signal.Signals(sig).name
    assert err.value.exit_code == 128 + sig
    assert str(err.value).startswith(f"interrupted by {name}: rolled back")
    state = guest.load()
    assert state["dead"] == [] and state["stopped"] == [] and state["probes"] == [], "everything undone"
    kinds = _events(run.dir)
    assert ("fault", "kill_resolver") in kinds and ("fault", "stop_resolver") in kinds
    assert ("rollback", "cont_resolver") in kinds and ("rollback", "start_resolver") in kinds
    meta = _meta(run.dir)
    assert meta["status"] == "interrupted" and meta["errors"] == [f"interrupted by {name}"]
    assert not (run.dir / RUN_INCOMPLETE).exists() and not (env.tmp / "state" / MARKER).exists()
    assert signal.getsignal(sig) == handlers_before, "handlers restored"


def test_a_dropped_connection_is_reconnected_for_the_rollback(env):
    guest = FakeGuest(env.state, drop_after=KILL_RS2)  # the next command finds the connection gone
    run = Run(_lab(), guest, env.exp)
    with pytest.raises(LabError) as err:
        run.execute()
    message = str(err.value)
    assert message.startswith("experiment failed: lost the SSH connection to the lab (EOFError")
    assert "\n" not in message and "rolled back" in message
    state = guest.load()
    assert state["dead"] == [] and state["stopped"] == [] and state["probes"] == []
    assert ("rollback", "start_resolver") in _events(run.dir)
    assert _meta(run.dir)["status"] == "failed" and not (run.dir / RUN_INCOMPLETE).exists()


def test_a_lab_that_stays_unreachable_ends_in_one_line_and_recover_finishes_the_run(env, tmp_path):
    guest = FakeGuest(env.state, drop_after=KILL_RS2, reachable=False)
    run = Run(_lab(), guest, env.exp)
    started = time.monotonic()
    with pytest.raises(LabError) as err:
        run.execute()
    assert time.monotonic() - started < 10, "the reconnect budget bounds the wait"
    message = str(err.value)
    assert message.startswith("lost the SSH connection to the lab and could not reconnect within 0.5 s")
    assert "`fab recover` will roll back what is left and save the data" in message
    assert "\n" not in message and err.value.exit_code == 3
    assert guest.load()["dead"] == ["rs2"], "the fault is still there"
    pending = json.loads((run.dir / RUN_INCOMPLETE).read_text())
    assert {"func": "start_resolver", "arguments": {"resolver": "rs2"}} in pending["undo"]
    assert [r["provider"]["func"] for r in pending["rollbacks"]] == ["start_resolver"]
    assert ("fault", "kill_resolver") in _events(run.dir), "what was recorded is kept"
    reports = subprocess.run([sys.executable, "-m", "reports", str(run.dir)], capture_output=True, text=True)
    assert reports.returncode != 0 and reports.stderr.strip().endswith("`fab recover` finishes it")
    assert "incomplete run" in reports.stderr and len(reports.stderr.strip().splitlines()) == 1

    back = FakeGuest(env.state)  # the lab answers again
    done = recover.recover_dead_run(link.Link(back), "`fab recover`")
    assert done is not None and done[0].dir == run.dir and done[1]["ok"]
    assert back.load()["dead"] == [] and back.load()["probes"] == []
    meta = _meta(run.dir)
    assert meta["status"] == "interrupted" and "`fab recover` finished the run" in meta["errors"][-1]
    assert ("rollback", "start_resolver") in _events(run.dir)
    assert not (run.dir / RUN_INCOMPLETE).exists() and not (tmp_path / "state" / MARKER).exists()
    assert recover.recover_dead_run(link.Link(back), "again") is None, "nothing left to recover"


def test_the_undo_is_on_disk_before_the_fault_runs(env):
    seen: list[dict] = []

    class Watching(FakeGuest):
        def run(self, cmd, **kw):
            if KILL_RS2 in cmd:
                (path,) = env.runs.glob(f"*/{RUN_INCOMPLETE}")
                seen.append(json.loads(path.read_text()))
            return super().run(cmd, **kw)

    exp = _experiment(env.tmp / "q.yaml", EXPERIMENT.replace("at: 30", "at: 0.5"))
    run = Run(_lab(), Watching(env.state), exp)
    run.execute()
    assert seen and {"func": "start_resolver", "arguments": {"resolver": "rs2"}} in seen[0]["undo"]
    assert seen[0]["remote"] == run.remote and seen[0]["lab"]["raw"]["network"]["vip"] == "192.168.100.100"


CHILD = """
import sys
from pathlib import Path
from chaos.experiment import load_experiment
from chaos.runner import Run
from tests.fakeguest import FakeGuest
from tests.test_chaos_interrupts import _lab
Run.deploy = lambda self: None
Run(_lab(), FakeGuest(Path(sys.argv[1])), load_experiment(sys.argv[2], _lab())).execute()
"""


def test_sigkill_of_the_runner_is_undone_at_the_next_runs_start(env):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(env.state), str(env.tmp / "kill.yaml")],
                             cwd=REPO, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    guest = FakeGuest(env.state)
    try:
        _wait_for(guest, lambda s: s["stopped"] == ["rs1"] and s["dead"] == ["rs2"])
    finally:
        child.kill()
        assert child.wait() == -signal.SIGKILL, child.stderr.read()
    assert guest.load()["probes"] == ["notify", "sampler"], "a killed runner leaves its probes running"
    (dead_dir,) = env.runs.iterdir()
    assert (dead_dir / RUN_INCOMPLETE).exists()

    quiet = _experiment(env.tmp / "quiet.yaml", QUIET)
    Run(_lab(), guest, quiet, before=recover.before_run).execute()  # the next run, as chaos.execute starts it
    state = guest.load()
    assert state["dead"] == [] and state["stopped"] == [] and state["probes"] == []
    meta = _meta(dead_dir)
    assert meta["status"] == "interrupted"
    assert "the start of the next run finished the run" in meta["errors"][-1]
    kinds = _events(dead_dir)
    assert kinds.index(("fault", "kill_resolver")) < kinds.index(("rollback", "start_resolver"))
    assert ("rollback", "cont_resolver") in kinds
    assert not (dead_dir / RUN_INCOMPLETE).exists()


def test_the_sampler_stops_by_itself_after_its_limit(tmp_path):
    source = tmp_path / "ip_vs"
    source.write_text("UDP  C0A86464:0035 rr\n  -> C0A8640B:0035      Masq    1      0          0\n")
    started = time.monotonic()
    subprocess.run([sys.executable, str(REPO / "chaos" / "ipvs_sampler.py"), str(tmp_path / "ipvs.csv"),
                    "--source", str(source), "--max-s", "0.5"], check=True, timeout=20)
    assert time.monotonic() - started < 10
    rows = (tmp_path / "ipvs.csv").read_text().splitlines()
    assert rows[0].startswith("t_ns,") and len(rows) > 3


def test_the_notify_reader_stops_by_itself_after_its_limit(tmp_path):
    fifo = tmp_path / "notify.fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    subprocess.run([sys.executable, str(REPO / "chaos" / "notify_reader.py"), str(fifo),
                    str(tmp_path / "detect.jsonl"), "--max-s", "0.5"], check=True, timeout=20)
    assert time.monotonic() - started < 10

