"""The runner's bookkeeping around faults, on a fake guest (no VM): no empty run directories, every
rollback runs even when recording one fails, durable writes of what the run recorded, the row count
in meta.json, and one run at a time per lab."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from chaos import probes
from chaos.experiment import load_experiment
from chaos.runner import Run
from lab.model.errors import LabError
from lab.model.parse import parse_lab
from tests.fakeguest import action_call

EXPERIMENT = """\
title: kill and restart rs2
extensions:
  - name: dnslab
    load: false
    timing: {warmup_s: 0, steady_s: 0, recover_s: 0}
method:
  - {type: action, name: kill rs2,
     provider: {type: python, module: chaos.ctk.actions, func: kill_resolver, arguments: {resolver: rs2}}}
rollbacks:
  - {type: action, name: wake rs2,
     provider: {type: python, module: chaos.ctk.actions, func: cont_resolver, arguments: {resolver: rs2}}}
"""


class FakeGuest:
    """Answers the runner's commands like a healthy guest; keeps every command it was sent."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, cmd: str, **_: object) -> SimpleNamespace:
        self.commands.append(cmd)
        if cmd == "date +%s%N":
            stdout = f"{time.time_ns()}\n"
        elif "date +%s%N" in cmd or "EPOCHREALTIME" in cmd:  # an action: the time, then its output
            stdout = f"{time.time_ns()}\n4242\n"
        else:
            stdout = ""
        return SimpleNamespace(exited=0, stdout=stdout, stderr="")

    def put(self, *_: object) -> None:
        pass

    def get(self, *_: object) -> None:
        pass


@pytest.fixture
def env(tmp_path, monkeypatch, raw_lab):
    """A lab, the experiment above, and runs/ and the lab state in tmp_path."""
    monkeypatch.setenv("DNSLAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DNSLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(Run, "deploy", lambda self: None)
    lab = parse_lab(raw_lab)
    path = tmp_path / "kill.yaml"
    path.write_text(EXPERIMENT)
    return SimpleNamespace(lab=lab, exp=load_experiment(str(path), lab), runs=tmp_path / "runs")


def _healthy(ok: bool):
    return lambda conn, lab, timeout_s=60.0, own=None: {"ok": ok, "resolvers": {}, "ipvs_missing": []}


def test_an_unhealthy_lab_leaves_no_run_directory(env, monkeypatch):
    monkeypatch.setattr(probes, "wait_healthy", _healthy(False))
    run = Run(env.lab, FakeGuest(), env.exp)
    with pytest.raises(LabError, match="not healthy before the experiment"):
        run.execute()
    assert not run.dir.exists()
    assert list(env.runs.iterdir()) == []


def test_a_run_that_never_starts_stops_its_prestarted_load_generator(env, monkeypatch, tmp_path):
    """The load generator is prestarted before the deploy (it imports Locust meanwhile); when the lab
    is not healthy it is stopped and the run's guest directory removed."""
    monkeypatch.setattr(probes, "wait_healthy", _healthy(False))
    path = tmp_path / "loaded.yaml"
    path.write_text(EXPERIMENT.replace("load: false", "load: {rate: 100}"))
    guest = FakeGuest()
    run = Run(env.lab, guest, load_experiment(str(path), env.lab))
    with pytest.raises(LabError, match="not healthy before the experiment"):
        run.execute()
    started = [i for i, c in enumerate(guest.commands) if "prestart.py" in c and "--go" in c]
    stopped = [i for i, c in enumerate(guest.commands) if "load.pid" in c and "INT" in c]
    removed = [i for i, c in enumerate(guest.commands) if c == f"rm -rf {run.remote}"]
    assert len(started) == len(stopped) == len(removed) == 1 and started[0] < stopped[0] < removed[0]
    assert list(env.runs.iterdir()) == []


def test_a_failure_to_record_one_rollback_does_not_skip_the_others(env, monkeypatch):
    monkeypatch.setattr(probes, "wait_healthy", _healthy(True))
    guest = FakeGuest()
    run = Run(env.lab, guest, env.exp)
    record = Run.record

    def flaky_record(self, event):
        if event["kind"] == "rollback" and not getattr(self, "_failed_once", False):
            self._failed_once = True
            raise OSError(28, "No space left on device")
        record(self, event)

    monkeypatch.setattr(Run, "record", flaky_record)
    run.execute()
    calls = [action_call(c) for c in guest.commands]
    starts = [c for c in calls if c == ("ensure", ["systemd", "dnslab-resolver@rs2.service", "rs2"])]
    conts = [c for c in calls if c[0] in ("cont", "ensure")]  # both SIGCONT
    assert len(conts) == 2 and len(starts) == 1  # the rollback (CONT) and the kill's undo (CONT, start) ran
    events = [json.loads(line) for line in (run.dir / "events.jsonl").read_text().splitlines()]
    assert [e["action"] for e in events if e["kind"] == "rollback"] == ["start_resolver"]
    meta = json.loads((run.dir / "meta.json").read_text())
    assert meta["errors"] == [
        "recording rollback cont_resolver: OSError: [Errno 28] No space left on device"]


def test_run_files_are_written_atomically(env, monkeypatch):
    """events.jsonl, journal.json and meta.json are replaced whole: a crash mid-write leaves the old file."""
    from chaos import events
    from lab.local import atomic

    monkeypatch.setattr(probes, "wait_healthy", _healthy(True))
    written: list[str] = []
    real = atomic.write_atomic

    def spy(path, data, mode=0o644):
        written.append(Path(path).name)
        return real(path, data, mode)

    monkeypatch.setattr(atomic, "write_atomic", spy)
    monkeypatch.setattr(events, "write_atomic", spy)
    run = Run(env.lab, FakeGuest(), env.exp)
    run.execute()
    assert {"events.jsonl", "journal.json", "meta.json"} <= set(written)
    assert not [p for p in run.dir.iterdir() if p.name.endswith(".tmp")]


def test_meta_records_the_merged_row_count(env, monkeypatch):
    """The merge's row count goes to meta.json; `python -m reports` checks queries.csv against it."""
    from loadtest.records import Recorder
    from tests.test_bad_input_cli import add_rows

    run = Run(env.lab, FakeGuest(), env.exp)
    run.exp = dataclasses.replace(env.exp, load={})  # a run with load: fetch merges the records
    (run.dir / "records").mkdir(parents=True)
    rec = Recorder(str(run.dir / "records"), "guest-1", [("who.lab.test", "TXT")])
    add_rows(rec, [1, 2, 3], [10, 10, 10], [0, 0, 0], ["rs1"] * 3)
    rec.close()
    run.fetch()
    assert run.query_rows == 3 and run.errors == []
    assert run.meta({}, {"ok": True})["queries_rows"] == 3


HOLD = """
import sys, time
from lab.local.runlock import lab_lock
with lab_lock("run kill-one"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_run_is_refused_while_one_holds_the_lab(env, monkeypatch, tmp_path):
    monkeypatch.setattr(probes, "wait_healthy", _healthy(True))
    holder = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        run = Run(env.lab, FakeGuest(), env.exp)
        with pytest.raises(LabError, match=rf"cannot start run kill: the lab is busy: run kill-one "
                                           rf"\(PID {holder.pid}\) holds "
                                           r".*lab.lock since 20\d\d-") as err:
            run.execute()
        assert "\n" not in str(err.value) and not run.dir.exists()
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait()
    assert Run(env.lab, FakeGuest(), env.exp).execute().is_dir()


def test_the_lock_is_reentrant_in_one_process(env):
    from lab.local.runlock import lab_lock

    with lab_lock("demo"), lab_lock("deploy"), lab_lock("matrix quick"):
        pass
    with lab_lock("deploy"):  # released: taken again
        pass


def test_a_stop_signal_during_the_cleanup_lets_it_finish_then_stops_what_follows(env, monkeypatch):
    """Ctrl-C (or SIGTERM) while the run rolls back: the cleanup completes, then the run raises
    Interrupted so a matrix or demo does not go on to its next cell."""
    import os
    import signal

    from chaos.interrupts import Interrupted

    monkeypatch.setattr(probes, "wait_healthy", _healthy(True))
    finish = Run.finish

    def finish_interrupted(self):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the cleanup runs
        return finish(self)

    monkeypatch.setattr(Run, "finish", finish_interrupted)
    run = Run(env.lab, FakeGuest(), env.exp)
    with pytest.raises(Interrupted) as err:
        run.execute()
    assert err.value.signame == "SIGTERM" and err.value.exit_code == 128 + signal.SIGTERM
    assert (run.dir / "meta.json").is_file() and (run.dir / "events.jsonl").is_file()


def test_the_run_tells_its_subscribers_what_happens_in_order(env, monkeypatch):
    """started, the fault (recorded, activity done), the rollbacks, finished with the whole run."""
    from chaos.events import Handler

    monkeypatch.setattr(probes, "wait_healthy", _healthy(True))
    heard: list[tuple[str, str]] = []

    class Listener(Handler):
        def started(self, run):
            heard.append(("started", run.dir.name))

        def recorded(self, run, event):
            heard.append(("recorded", f"{event['kind']} {event['action']}"))

        def activity_done(self, run, done):
            heard.append(("activity", f"{done.status} {done.said}"))

        def rollback_done(self, run, done):
            heard.append(("rollback", f"{done.status} {done.said}"))

        def finished(self, run, end):
            heard.append(("finished", f"{end.status} {len(end.events)} events"))

    run = Run(env.lab, FakeGuest(), env.exp, subscribers=(Listener(),))
    run.execute()
    assert heard == [
        ("started", run.dir.name), ("recorded", "note start"), ("recorded", "note steady_start"),
        ("recorded", "note method_start"), ("recorded", "fault kill_resolver"),
        ("activity", "succeeded kill rs2: kill_resolver rs2"), ("recorded", "note recover_end"),
        ("recorded", "rollback cont_resolver"), ("rollback", "succeeded cont_resolver rs2"),
        ("recorded", "rollback start_resolver"), ("rollback", "succeeded start_resolver rs2"),
        ("finished", "completed 7 events")]
    journal = json.loads((run.dir / "journal.json").read_text())
    assert [e["activity"]["name"] for e in journal["run"]] == ["kill rs2"]
    assert [e["activity"]["name"] for e in journal["rollbacks"]] == ["wake rs2", "undo start_resolver"]


def test_a_failing_subscriber_lets_the_others_hear_then_raises():
    from chaos.events import Handler, Registry

    heard = []

    class Broken(Handler):
        def recorded(self, run, event):
            raise OSError(28, "No space left on device")

    class Listener(Handler):
        def recorded(self, run, event):
            heard.append(event)

    with pytest.raises(OSError, match="No space"):
        Registry(Broken(), Listener()).recorded(None, {"kind": "note"})
    assert heard == [{"kind": "note"}]
