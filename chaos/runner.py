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

import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from chaos import actions, probes
from chaos.experiment import Activity, Experiment, Timing, prepare
from chaos.interrupts import Interrupted, deferred, stop_on_signals
from chaos.journal import Journal, activity_dict, utc_iso
from chaos.link import ConnectionLost, Link
from chaos.probes import GUEST_RUNS
from chaos.timeline import Phases, Step, phases, schedule
from chaos.undo_log import UndoLog
from lab.local.atomic import write_atomic, write_json
from lab.local.runlock import lab_lock
from lab.local.state import runs_dir
from lab.model.config import Lab
from lab.model.errors import ActionFailed, LabError
from lab.model.layout import HOME, LOCUST, LOCUSTFILE, VENV
from lab.model.parse import check_id, flatten, merge
from lab.versions import guest_versions

LOAD_START_TIMEOUT_S = 90.0
HEALTH_TIMEOUT_S = 60.0
PROBE_MARGIN_S = 120.0  # guest probes stop by themselves this long after the run's planned end

console = Console(stderr=True)


def run_experiment(lab: Lab, conn: Any, name: str, *, cell: Mapping[str, Any] | None = None,
                   run_id: str | None = None) -> Path:
    """Run experiment `name` (chaos/experiments/NAME.yaml or a path) on the lab; the run directory.

    `cell` holds extra lab overrides (a matrix cell); they are deployed on top of the experiment's.
    """
    exp, run_lab = prepare(name, lab, cell)
    return Run(run_lab, conn, exp, settings=settings_of(exp, cell), run_id=run_id).execute()


def run_load_only(lab: Lab, conn: Any, seconds: float, rate: float | None = None) -> Path:
    """Load the lab for `seconds` without faults; the run directory (queries.csv, ipvs.csv, ...)."""
    load = {"rate": rate} if rate is not None else {}
    exp = Experiment(name="load", path=Path("<load>"), title=f"Load only, {seconds:g} s", description="",
                     overrides={}, load=load, timing=Timing(warmup_s=0.0, steady_s=seconds, recover_s=0.0),
                     window_s=seconds, hypothesis=(), method=(), rollbacks=())
    from lab.model.parse import with_overrides

    return Run(with_overrides(lab, {"load": load}), conn, exp, settings=flatten({"load": load})).execute()


def locust_command(lab: Lab, remote: str, run_time_s: float) -> str:
    """Locust in the client namespace with the lab's [load] settings (their flags: loadtest/knobs.py),
    recording into `remote`/records and stopping by itself after run_time_s."""
    from dataclasses import asdict

    from loadtest.knobs import locust_arguments

    values = {**asdict(lab.load), "nameservers": lab.nameserver_addresses()}
    args = [
        LOCUST, "-f", LOCUSTFILE, "--headless", "--only-summary", "--loglevel", "WARNING",
        "--host", str(lab.network.vip), "--run-time", f"{int(run_time_s)}s",
        *locust_arguments(values), "--dns-records", f"{remote}/records",
    ]
    return f"env PYTHONPATH={HOME} " + " ".join(shlex.quote(a) for a in args)


def settings_of(exp: Experiment, cell: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings this run varies from lab.toml: the experiment's overrides, load and the cell's."""
    data = merge(dict(exp.overrides), {"load": dict(exp.load or {})})
    return flatten(merge(data, dict(cell or {})))


@dataclass
class Run:
    """One run's state; `execute` is the whole sequence."""

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

    def __post_init__(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.run_id = check_id(self.run_id or f"{stamp}-{self.exp.name}", "run id")
        self._name_dir(self.run_id)
        self.conn = self.conn if isinstance(self.conn, Link) else Link(self.conn)
        self.target = actions.Target(self.conn, self.lab)
        self.journal = Journal(experiment=dict(self.exp.raw) or {"title": self.exp.title})
        self.steps = schedule(self.exp.method)
        t = self.exp.timing
        self.phases: Phases = phases(t.warmup_s, t.steady_s, t.recover_s, self.steps)

    def _name_dir(self, run_id: str) -> None:
        """The run directory: runs/<run_id>, or runs/<run_id>-N when that exists; the guest's twin."""
        self.dir = runs_dir() / run_id
        n = 1
        while self.dir.exists():
            n += 1
            self.dir = runs_dir() / f"{run_id}-{n}"
        self.run_id = self.dir.name
        self.remote = f"{GUEST_RUNS}/{self.run_id}"

    # --- the sequence ---------------------------------------------------------------------------------

    def execute(self) -> Path:
        """Deploy, load, fault, recover, roll back, collect. Always rolls back and keeps the data.

        Holds the lab's lock (one run at a time). The run directory is made only once the lab is
        healthy: a run that never started leaves none."""
        with lab_lock(f"run {self.exp.name}"), stop_on_signals(console):
            return self._execute()

    def _execute(self) -> Path:
        from chaos.recover import before_run, run_state

        console.print(f"[bold]{self.exp.title}[/] -> {self.dir}")
        before_run(self.conn)
        self.deploy()
        before = probes.wait_healthy(self.conn, self.lab, HEALTH_TIMEOUT_S)
        if not before["ok"]:
            raise ActionFailed("the lab is not healthy before the experiment: "
                               f"{probes.describe_health(before)}; run `fab deploy`, then `fab status`")
        while True:  # another lab's run may have taken the name since (runs/ is shared)
            try:
                self.dir.mkdir(parents=True)
                break
            except FileExistsError:
                self._name_dir(self.dir.name)
        self.undo.open(self.dir, run_state(self))
        stopped: Interrupted | None = None
        unexpected: Exception | None = None
        try:
            self.start_probes()
            self.timeline()
        except KeyboardInterrupt as err:
            stopped = err if isinstance(err, Interrupted) else Interrupted("SIGINT")
            self.status = "interrupted"
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
        return int(self.conn.run("date +%s%N", hide=True).stdout.strip())

    def note(self, action: str, **detail: Any) -> None:
        t_ns = self.guest_now()
        self.marks[action] = t_ns
        self.record({"t_ns": t_ns, "kind": "note", "action": action, "target": "run", "detail": detail})

    def record(self, event: dict[str, Any]) -> None:
        """Keep an event and append it to events.jsonl at once (sorted again when the run ends)."""
        self.events.append(event)
        with (self.dir / "events.jsonl").open("a") as f:
            f.write(json.dumps(event) + "\n")

    def start_probes(self) -> None:
        """The load generator first (Locust takes seconds to start under TCG), the IPVS sampler and the
        notify reader while it starts, then wait for its first records."""
        self.conn.run(f"mkdir -p {shlex.quote(self.remote)}/records", hide=True)
        if self.exp.uses_load:
            probes.start_background(self.conn, self.locust_command(), f"{self.remote}/load.pid",
                                    f"{self.remote}/locust.log", "client")
        max_s = LOAD_START_TIMEOUT_S + self.phases.end + PROBE_MARGIN_S  # they stop by themselves then
        probes.start_sampler(self.conn, self.lab, self.remote, max_s=max_s)
        probes.start_notify_reader(self.conn, self.lab, self.remote, max_s=max_s)
        if self.exp.uses_load:
            self.wait_for_load()
        self.note("load_start" if self.exp.uses_load else "start")

    def locust_command(self) -> str:
        return locust_command(self.lab, self.remote, self.phases.end + PROBE_MARGIN_S)

    def wait_for_load(self) -> None:
        """Wait until the load generator has written its first records (Locust starts slowly under TCG).

        One SSH round trip: the guest polls every 0.1 s and answers `ready`, `exited` or `timeout`."""
        pidfile = f"{self.remote}/load.pid"  # written by the detached shell: may lag a little
        script = (f"for i in $(seq {int(LOAD_START_TIMEOUT_S * 10)}); do "
                  f"if [ -n \"$(ls {shlex.quote(self.remote)}/records/ 2>/dev/null)\" ]; then echo ready; "
                  f"exit 0; fi; if [ -s {shlex.quote(pidfile)} ] && ! kill -0 $(cat {shlex.quote(pidfile)}) "
                  "2>/dev/null; then "
                  f"echo exited; exit 0; fi; "
                  f"sleep 0.1; done; echo timeout")
        with console.status("starting the load generator"):
            state = self.conn.run(script, hide=True, warn=True).stdout.strip()
        if state == "ready":
            return
        if state == "exited":
            log = self.conn.run(f"tail -5 {shlex.quote(self.remote)}/locust.log", hide=True, warn=True).stdout
            raise ActionFailed(f"the load generator exited at start: {' '.join(log.split())[-300:]}")
        raise ActionFailed(f"the load generator wrote no records within {LOAD_START_TIMEOUT_S:g} s")

    def timeline(self) -> None:
        """Warmup and steady window, the method at its offsets, then recovery; shown with rich."""
        p = self.phases
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[total_s]:.0f} s"), console=console, transient=False) as bar:
            task = bar.add_task("warmup", total=p.end, total_s=p.end)
            t0 = time.monotonic()

            def wait_until(offset: float, phase: str) -> None:
                bar.update(task, description=phase)
                while (left := offset - (time.monotonic() - t0)) > 0:
                    bar.update(task, completed=time.monotonic() - t0)
                    time.sleep(min(0.2, left))

            wait_until(p.warmup_end, "warmup")
            self.note("steady_start")
            wait_until(p.method_start, "steady state")
            self.note("method_start")
            for step in self.steps:
                wait_until(p.method_start + step.offset_s, f"method: next {step.activity.name}")
                self.perform(step, bar)
            wait_until(p.end, "recovery")
            bar.update(task, completed=p.end, description="done")
        self.note("recover_end")

    def perform(self, step: Step, bar: Progress) -> None:
        act: Activity = step.activity  # type: ignore[assignment]
        start = utc_iso()
        try:
            if act.type == "probe":
                result = act.call.resolve()(self.target, **act.call.arguments)
                out = write_json(self.dir / f"{act.call.func}.json", result)
                self.note(act.call.func, file=out.name)
                self.journal.record("run", activity_dict(act), start, "succeeded", output=str(out.name))
                bar.console.print(f"  +{step.offset_s:5.1f} s  probe {act.name} -> {out.name}")
                return
            self.undo.expect(actions.planned_undo(self.target, act.call.func, act.call.arguments))
            outcome: actions.Outcome = act.call.resolve()(self.target, **act.call.arguments)
        except LabError as err:
            self.journal.record("run", activity_dict(act), start, "failed", error=str(err))
            raise
        self.record(outcome.event(actions.kind_in_method(act.call.func)))
        self.undo.extend(outcome.undo)
        self.journal.record("run", activity_dict(act), start, "succeeded", output=outcome.event("fault"))
        bar.console.print(f"  +{step.offset_s:5.1f} s  {act.name}: {outcome.action} {outcome.target}")

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
                self.journal.record("rollbacks", activity, start, "failed", error=str(err))
                continue
            done.add(key(func, arguments))
            console.print(f"  rollback: {outcome.action} {outcome.target}")
            event = outcome.event("rollback")
            try:
                self.record(event)
                self.journal.record("rollbacks", activity, start, "succeeded", output=event)
            except Exception as err:  # noqa: BLE001 - nor may failing to record one
                self.errors.append(f"recording rollback {func}: {type(err).__name__}: {err}")

    def stop_probes(self) -> None:
        """Stop the load generator, the sampler and the notify reader together (one round trip), each
        only if it still is this run's."""
        stops = [(f"{self.remote}/sampler.pid", "TERM", 10.0), (f"{self.remote}/notify.pid", "TERM", 10.0)]
        if self.exp.uses_load:
            self.note("load_stop")
            stops.insert(0, (f"{self.remote}/load.pid", "INT", 30.0))
        probes.stop_all(self.conn, stops, owner=f"{self.remote}/")

    # --- collection -----------------------------------------------------------------------------------

    def collect(self, after: dict[str, Any]) -> None:
        """Fetch records, samples and logs; write events, steady state, journal and meta."""
        with console.status("fetching the run's data"):
            self.fetch()
        self.events += probes.read_detect_events(self.dir / "records" / probes.DETECT_FILE)
        end_ns = self.guest_now()
        start_ns = min((e["t_ns"] for e in self.events), default=end_ns)
        (self.dir / "keepalived.log").write_text(probes.keepalived_log(self.conn, start_ns, end_ns))
        self.events.sort(key=lambda e: e["t_ns"])
        write_atomic(self.dir / "events.jsonl", "".join(json.dumps(e) + "\n" for e in self.events))
        steady = self.steady_state()
        journal = self.journal.render(self.status, steady, {"errors": self.errors, "health_after": after,
                                                            "steady_state_windows_ns": self.windows})
        write_json(self.dir / "journal.json", journal)
        write_json(self.dir / "meta.json", self.meta(steady, after))
        self.conn.run(f"rm -rf {shlex.quote(self.remote)}", hide=True, warn=True)

    def fetch(self) -> None:
        """Copy ipvs.csv, the loadtest's records and logs from the guest; merge records into queries.csv."""
        files = self.conn.run(f"cd {shlex.quote(self.remote)} && ls", hide=True, warn=True).stdout.split()
        records = self.dir / "records"
        records.mkdir(exist_ok=True)
        for name in ("ipvs.csv", "locust.log", "sampler.log", probes.DETECT_FILE):
            if name in files:
                local = (self.dir if name == "ipvs.csv" else records) / name
                self.conn.get(f"{self.remote}/{name}", str(local))
        listing = self.conn.run(f"ls {shlex.quote(self.remote)}/records", hide=True, warn=True).stdout.split()
        for name in listing:
            if name.endswith(".dq"):
                self.conn.get(f"{self.remote}/records/{name}", str(records / name))
        if self.exp.uses_load:
            merged = subprocess.run([sys.executable, "-m", "loadtest.merge", str(records), "--out",
                                     str(self.dir / "queries.csv")], capture_output=True, text=True)
            rows = re.match(r"(\d+) queries -> ", merged.stdout)
            self.query_rows = int(rows.group(1)) if rows else None
            if merged.returncode != 0:
                self.status = "failed"
                self.errors.append(f"merging records failed: {' '.join(merged.stderr.split())[-300:]}")

    def steady_state(self) -> dict[str, Any]:
        """The hypothesis over the records before the method and at the end of recovery."""
        path = self.dir / "queries.csv"
        if not self.exp.hypothesis or not path.exists():
            return {}
        import pandas as pd

        records = pd.read_csv(path)
        w = int(self.exp.window_s * 1e9)
        before_end = self.marks.get("method_start", self.marks["recover_end"])
        windows = {"before": (before_end - w, before_end),
                   "after": (self.marks["recover_end"] - w, self.marks["recover_end"])}
        self.windows = {name: [lo, hi] for name, (lo, hi) in windows.items()}
        return {name: evaluate(self.exp, probes.window(records, lo, hi))
                for name, (lo, hi) in windows.items()}

    def meta(self, steady: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        info = self.conn.run(
            "uname -r; unbound -V 2>&1 | head -1; keepalived --version 2>&1 | head -1; "
            "ipvsadm --version 2>&1 | head -1; "
            f"ls -d {VENV}/lib/python3*/site-packages/locust-*.dist-info"
            " | sed 's/.*locust-\\(.*\\)\\.dist-info/locust \\1/'", hide=True, warn=True)
        lines = (info.stdout.splitlines() + [""] * 5)[:5]
        first_t = min((e["t_ns"] for e in self.events), default=None)
        last_t = max((e["t_ns"] for e in self.events), default=None)
        return {
            "run_id": self.run_id, "experiment": self.exp.name, "title": self.exp.title,
            "description": self.exp.description, "lab": self.lab.as_dict(), "settings": self.settings,
            "tools": {"unbound": lines[1], "keepalived": lines[2], "ipvsadm": lines[3], "locust": lines[4]},
            "guest": guest_versions(self.conn),
            "kernel": lines[0], "start": utc_iso(first_t), "end": utc_iso(last_t), "status": self.status,
            "steady_state": steady, "steady_state_windows_ns": self.windows,
            "healthy_after": after["ok"], "errors": self.errors, "queries_rows": self.query_rows,
            "timing": {"warmup_s": self.exp.timing.warmup_s, "steady_s": self.exp.timing.steady_s,
                       "recover_s": self.exp.timing.recover_s},
            **({"incomplete": self.incomplete} if self.incomplete else {}),
        }


def evaluate(exp: Experiment, records: Any) -> dict[str, dict[str, Any]]:
    """Each steady-state probe's value over a window of records against its tolerance, by probe name."""
    out = {}
    for tol in exp.hypothesis:
        value = tol.call.resolve()(records, **tol.call.arguments)
        out[tol.name] = {"ok": tol.low <= value <= tol.high, "value": round(value, 6),
                         "tolerance": [tol.low, tol.high]}
    return out

