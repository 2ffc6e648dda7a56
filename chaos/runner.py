"""Run one chaos experiment end to end into reports/runs/<run-id>/ (docs/run-directory.md).

Order: finish a run that died before this one (chaos.recover) -> validate -> deploy the overrides
-> check the lab is healthy -> start the IPVS sampler and the load in the client namespace ->
steady window -> timeline -> recovery -> ALWAYS roll back (also on SIGINT, SIGTERM, SIGHUP, a failed
action or a lost connection, which is reconnected for it) -> stop load and sampler -> verify the lab
is healthy again -> fetch queries, IPVS samples and Keepalived's log -> evaluate the steady-state
hypothesis on the records before and after the method -> events.jsonl, journal.json, meta.json.
Before each fault the pending undo goes to the run directory (chaos.undo_log), so `fab recover` can
finish a run that was killed or lost the lab for good; the guest's probes stop by themselves.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from chaos import actions, collect, probes
from chaos.events import ActivityDone, EventsFile, Finished, Handler, Registry
from chaos.experiment import Activity, Experiment
from chaos.interrupts import Interrupted, deferred, stop_on_signals
from chaos.journal import Journal, JournalWriter, activity_dict, utc_iso
from chaos.link import ConnectionLost, Link
from chaos.progress import ConsoleView
from chaos.recording import MAX_SLIP_S, Recorders
from chaos.rundir import claim, free_dir, guest_dir, run_id_for
from chaos.timeline import Pace, Phases, Step, phases, schedule
from chaos.undo_log import UndoLog, run_state
from lab.local.atomic import write_json
from lab.local.runlock import lab_lock
from lab.local.state import RUN_INTERRUPTED
from lab.model.config import Lab
from lab.model.errors import ActionFailed, LabError
from lab.model.parse import flatten, merge
from lab.ssh import remote
from lab.versions import guest_versions, tool_banners

HEALTH_TIMEOUT_S = 60.0

console = Console(stderr=True)


def settings_of(exp: Experiment, cell: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings this run varies from lab.toml: the experiment's overrides, load and the cell's."""
    data = merge(dict(exp.overrides), {"load": dict(exp.load or {})})
    return flatten(merge(data, dict(cell or {})))


@dataclass
class Run:
    """One run's state and sequence. `execute` is the whole run; `start` (everything before the
    recorders: a dead run finished, deploy, health, the run directory) and `finish` (roll back, stop,
    collect) are public for chaos.ctk.session, which plays the method itself.

    It emits what happens (chaos.events) to its subscribers: the console view, the journal and the
    events.jsonl writer; `subscribers` adds more."""

    lab: Lab
    conn: Any
    exp: Experiment
    settings: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    undo: UndoLog = field(default_factory=UndoLog)
    marks: dict[str, int] = field(default_factory=dict)
    status: str = "completed"
    errors: list[str] = field(default_factory=list)
    windows: dict[str, list[int]] = field(default_factory=dict)
    query_rows: int | None = None  # rows the merge wrote to queries.csv (meta.json `queries_rows`)
    incomplete: str | None = None  # why data is missing (meta.json `incomplete`: reports refuse the run)
    subscribers: tuple[Handler, ...] = ()
    before: Callable[[Any], None] | None = None  # run first in `start`: chaos.execute finishes a dead run

    def __post_init__(self) -> None:
        self.run_id = run_id_for(self.exp.name, self.run_id)
        self.dir = free_dir(self.run_id)
        self.run_id, self.remote = self.dir.name, guest_dir(self.dir.name)
        self.conn = self.conn if isinstance(self.conn, Link) else Link(self.conn)
        self.target = actions.Target(self.conn, self.lab)
        journal = Journal(experiment=dict(self.exp.raw) or {"title": self.exp.title})
        self.bus = Registry(ConsoleView(console), JournalWriter(journal), EventsFile(), *self.subscribers)
        self.steps = schedule(self.exp.method)
        t = self.exp.timing
        self.phases: Phases = phases(t.warmup_s, t.steady_s, t.recover_s, self.steps)
        self.pace = Pace()

    @property
    def recorders(self) -> Recorders:
        return Recorders(self.conn, self.lab, self.remote, self.exp.uses_load, self.phases.end)

    # --- the sequence ---------------------------------------------------------------------------------

    def execute(self) -> Path:
        """Deploy, load, fault, recover, roll back, collect. Always rolls back and keeps the data.

        Holds the lab's lock (one run at a time). The run directory is made only once the lab is
        healthy: a run that never started leaves none."""
        with lab_lock(f"run {self.exp.name}"), stop_on_signals(console):
            return self._execute()

    def _execute(self) -> Path:
        self.start()
        stopped: Interrupted | None = None
        unexpected: Exception | None = None
        try:
            self.start_probes()
            self.timeline()
        except KeyboardInterrupt as err:
            stopped = err if isinstance(err, Interrupted) else Interrupted("SIGINT")
            self.status = RUN_INTERRUPTED
            self.errors.append(f"interrupted by {stopped.signame}")
        except LabError as err:
            self.status = "failed"
            self.errors.append(str(err))
        except Exception as err:  # noqa: BLE001 - roll back and keep the data, then re-raise
            unexpected, self.status = err, "failed"
            self.errors.append(f"{type(err).__name__}: {err}")
        finally:
            with deferred(console) as received:
                after = self.finish()
        if stopped is None and received:  # asked to stop during the cleanup: it finished; stop what follows
            stopped = Interrupted(received[0])
        if stopped is not None:
            message = f"interrupted by {stopped.signame}: rolled back, data kept in {self.dir}"
            console.print(f"[yellow]{message}[/]")
            raise Interrupted(stopped.signame, message)
        if unexpected is not None:
            raise unexpected
        if not after["ok"]:
            raise ActionFailed(f"the lab is not healthy after rollback: {probes.describe_health(after)}; "
                           f"data in {self.dir}; `fab deploy` puts it back")
        if self.status == "failed":
            raise ActionFailed(f"experiment failed: {self.errors[0]}; rolled back, data in {self.dir}")
        return self.dir

    def start(self) -> None:
        """Everything before the recorders start, holding the lab's lock: finish a run that died before
        this one (chaos.recover), prestart the load generator, deploy, check the lab is healthy (or
        stop the load generator again), make the run directory and open the undo log in it. Emits
        `started`."""
        if self.before is not None:
            self.before(self.conn)
        self.recorders.prestart()  # Locust imports while the lab deploys; it sends nothing before the go
        try:
            self.deploy()
            before = probes.wait_healthy(self.conn, self.lab, HEALTH_TIMEOUT_S, own=self.remote)
            if not before["ok"]:
                raise ActionFailed("the lab is not healthy before the experiment: "
                                   f"{probes.describe_health(before)}; run `fab deploy`, then `fab status`")
        except BaseException:
            with deferred(console), contextlib.suppress(LabError):  # unstopped, it exits by itself
                self.recorders.stop()
                remote.run(self.conn, f"rm -rf {shlex.quote(self.remote)}")
            raise
        self.dir = claim(self.dir)
        self.run_id, self.remote = self.dir.name, guest_dir(self.dir.name)
        self.undo.open(self.dir, run_state(self))
        self.bus.started(self)

    def finish(self) -> dict[str, Any]:
        """Roll back, stop the probes, check health, collect; the health after. A lost connection is
        reconnected (chaos.link); when the lab stays unreachable the undo log stays for `fab recover`."""
        self.conn.retry = True
        try:
            self.marks.setdefault("recover_end", self.guest_now())
            self.rollback()
            self.stop_probes()
            after = probes.wait_healthy(self.conn, self.lab, HEALTH_TIMEOUT_S)
            self.collect(after)
        except ConnectionLost as err:
            raise ConnectionLost(f"{err}; `fab recover` will roll back what is left and save the data "
                                 f"(recorded so far in {self.dir})") from None
        self.undo.close()
        return after

    def deploy(self) -> None:
        from lab.ops.deploy import deploy

        summary = deploy(self.lab, self.conn, console=console, verbose=False)
        if summary.failed:
            raise ActionFailed("deploy failed before the experiment; run `fab deploy` to see why")

    def guest_now(self) -> int:
        out = remote.run(self.conn, "date +%s%N", check=True, what="reading the guest's clock").stdout
        return int(out.strip())

    def note(self, action: str, **detail: Any) -> None:
        t_ns = self.guest_now()
        self.marks[action] = t_ns
        self.record({"t_ns": t_ns, "kind": "note", "action": action, "target": "run", "detail": detail})

    def record(self, event: dict[str, Any]) -> None:
        """Keep an event and tell the subscribers (events.jsonl gets it at once, sorted when the run ends)."""
        self.events.append(event)
        self.bus.recorded(self, event)

    def start_probes(self) -> None:
        """Start the recorders (chaos.recording) and mark the start."""
        self.recorders.start(console)
        self.note("load_start" if self.exp.uses_load else "start")

    def stop_probes(self) -> None:
        if self.exp.uses_load:
            self.note("load_stop")
        self.recorders.stop()

    def timeline(self) -> None:
        """Warmup and steady window, the method at its offsets (moved by the slip: a pause counts from
        when the activity before it ended), then recovery; shown as progress."""
        p = self.phases
        t0 = time.monotonic()

        def wait_until(offset: float, phase: str) -> None:
            self.bus.progress(self, phase, time.monotonic() - t0, p.end + self.pace.slip_s)
            while (left := offset - (time.monotonic() - t0)) > 0:
                self.bus.progress(self, phase, time.monotonic() - t0, p.end + self.pace.slip_s)
                time.sleep(min(0.2, left))

        try:
            wait_until(p.warmup_end, "warmup")
            self.note("steady_start")
            wait_until(p.method_start, "steady state")
            self.note("method_start")
            for step in self.steps:
                check_slip(self.pace)
                wait_until(p.method_start + self.pace.due(step), f"method: next {step.activity.name}")
                self.perform(step)
                self.pace.ran(step, time.monotonic() - t0 - p.method_start)
            wait_until(p.end + self.pace.slip_s, "recovery")
        finally:
            self.bus.progress(self, None, p.end + self.pace.slip_s, p.end + self.pace.slip_s)
        self.note("recover_end")

    def perform(self, step: Step) -> None:
        """Run one activity of the method: a probe's document into the run directory, or an action
        whose undo is on disk before it runs."""
        act: Activity = step.activity  # type: ignore[assignment]
        start, activity = utc_iso(), activity_dict(act)
        try:
            if act.type == "probe":
                result = act.call.resolve()(self.target, **act.call.arguments)
                out = write_json(self.dir / f"{act.call.func}.json", result)
                self.note(act.call.func, file=out.name)
                self.bus.activity_done(self, ActivityDone("run", activity, start, "succeeded", str(out.name),
                                                          said=f"probe {act.name} -> {out.name}",
                                                          offset_s=step.offset_s))
                return
            self.undo.expect(actions.planned_undo(self.target, act.call.func, act.call.arguments))
            with deferred(console) as received:  # a stop request waits until the fault is on record
                outcome: actions.Outcome = act.call.resolve()(self.target, **act.call.arguments)
                self.record(outcome.event(actions.kind_in_method(act.call.func)))
                self.undo.extend(outcome.undo)
        except LabError as err:
            self.bus.activity_done(self, ActivityDone("run", activity, start, "failed", error=str(err)))
            raise
        self.bus.activity_done(self, ActivityDone(
            "run", activity, start, "succeeded", outcome.event("fault"),
            said=f"{act.name}: {outcome.action} {outcome.target}", offset_s=step.offset_s))
        if received:
            raise Interrupted(received[0])

    def rollback(self) -> None:
        """The experiment's rollbacks, then every action's own undo (latest first). Undos are
        idempotent, so each distinct call runs once: a repeated fault's undo, or one the experiment's
        own rollbacks already ran, is not repeated. Errors are kept."""
        def key(func: str, arguments: dict[str, Any]) -> tuple[str, str]:
            return func, json.dumps(arguments, sort_keys=True)

        calls: list[tuple[dict[str, Any], str, dict[str, Any]]] = [
            (activity_dict(a), a.call.func, dict(a.call.arguments)) for a in self.exp.rollbacks]
        distinct = dict.fromkeys(key(u.func, u.arguments) for u in reversed(self.undo))
        calls += [({"type": "action", "name": f"undo {func}", "provider": {
            "type": "python", "module": "chaos.ctk.actions", "func": func, "arguments": json.loads(args)}},
            func, json.loads(args)) for func, args in distinct]
        done: set[tuple[str, str]] = set()
        for activity, func, arguments in calls:
            if key(func, arguments) in done:
                continue
            start = utc_iso()
            try:
                outcome = actions.ACTIONS[func](self.target, **arguments)
            except Exception as err:  # noqa: BLE001 - one failed rollback must not skip the others
                self.errors.append(f"rollback {func}: {err}")
                self.bus.rollback_done(self, ActivityDone("rollbacks", activity, start, "failed",
                                                          error=str(err)))
                continue
            done.add(key(func, arguments))
            event = outcome.event("rollback")
            try:
                self.record(event)
                self.bus.rollback_done(self, ActivityDone("rollbacks", activity, start, "succeeded", event,
                                                          said=f"{outcome.action} {outcome.target}"))
            except Exception as err:  # noqa: BLE001 - nor may failing to record one
                self.errors.append(f"recording rollback {func}: {type(err).__name__}: {err}")

    # --- collection -----------------------------------------------------------------------------------

    def collect(self, after: dict[str, Any]) -> None:
        """Fetch records, samples and logs; judge the steady state; tell the subscribers (events.jsonl,
        journal.json); write meta.json; clear the guest's directory."""
        with console.status("fetching the run's data"):
            self.fetch()
        self.events += probes.read_detect_events(self.dir / "records" / probes.DETECT_FILE)
        end_ns = self.guest_now()
        start_ns = min((e["t_ns"] for e in self.events), default=end_ns)
        (self.dir / "keepalived.log").write_text(probes.keepalived_log(self.conn, start_ns, end_ns))
        self.events.sort(key=lambda e: e["t_ns"])
        steady, windows = collect.steady_state(self.exp, self.dir / "queries.csv", self.marks)
        self.windows = windows or self.windows
        self.bus.finished(self, Finished(self.status, steady, after, self.events))
        write_json(self.dir / "meta.json", self.meta(steady, after))
        remote.run(self.conn, f"rm -rf {shlex.quote(self.remote)}")

    def fetch(self) -> None:
        """Copy the run's files from the guest; merge the records into queries.csv."""
        collect.fetch(self.conn, self.remote, self.dir)
        if self.exp.uses_load:
            self.query_rows, error = collect.merge_records(self.dir / "records", self.dir / "queries.csv")
            if error is not None:
                self.status = "failed"
                self.errors.append(f"merging records failed: {error}")

    def meta(self, steady: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        return collect.meta(self, steady, after, tool_banners(self.conn), guest_versions(self.conn))


def check_slip(pace: Pace) -> None:
    """ActionFailed when the run has fallen so far behind its plan that its recorders would stop first."""
    if pace.slip_s > MAX_SLIP_S:
        raise ActionFailed(f"the run fell {pace.slip_s:.0f} s behind its plan (its actions are slow here); "
                           f"its recorders stop by themselves {MAX_SLIP_S:.0f} s after the planned end: "
                           "give the experiment fewer repetitions or a longer recover_s")
