"""The dnslab run that a `chaos run` drives (through chaos.ctk.control), and what its actions and probes do.

One `Session` per `chaos run`: dnslab's `Run` (chaos/runner.py) does the work, in the same order as
`fab chaos`: deploy, health, load + IPVS sampler + notify reader, warmup and steady window, the method
(Chaos Toolkit plays it; the control sets each activity's pause so it starts at its offset), recovery,
rollback (always), stop, collect into reports/runs/<id>/. Outside a session an action connects to the
lab itself and a steady-state probe is an error (there are no query records to judge).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chaos import actions, collect, probes
from chaos.events import ActivityDone
from chaos.experiment import Experiment, lab_for, load_experiment, parse_experiment
from chaos.journal import activity_dict, utc_iso
from chaos.recover import before_run
from chaos.runner import Run, check_slip, console, settings_of
from chaos.timeline import Step, method_span_s, schedule
from lab.local.atomic import write_json
from lab.model.config import Lab
from lab.model.errors import ActionFailed, ExperimentError, LabError

CTK_JOURNAL = "ctk-journal.json"  # Chaos Toolkit's journal as the control saw it (reports/ctk_journal.py)


@dataclass
class Session:
    """A dnslab run in progress under `chaos run`."""

    run: Run
    lock: ExitStack
    steps: dict[int, Step] = field(default_factory=dict)  # id(activity dict) -> its place on the timeline
    method_t0: float | None = None  # time.monotonic() when the method started
    phase: str = "run"  # or "rollbacks"
    window: Any = None  # the query records of the steady-state window being judged
    ctk_done: set[tuple[str, str]] = field(default_factory=set)  # calls Chaos Toolkit's rollbacks made
    current: dict[str, Any] | None = None  # the activity Chaos Toolkit is playing

    @property
    def exp(self) -> Experiment:
        return self.run.exp


ACTIVE: Session | None = None


# --- the lab and the experiment -----------------------------------------------------------------------

def lab_of(configuration: dict[str, Any] | None) -> Lab:
    """The lab named by `configuration.dnslab_lab`, else $DNSLAB_LAB, else lab.toml."""
    from lab.providers import running_lab

    path = (configuration or {}).get("dnslab_lab")
    if path is not None and not isinstance(path, str):
        raise ExperimentError(f"configuration.dnslab_lab: must be a lab file path, got {path!r}")
    return running_lab(path)


def source_file() -> str | None:
    """The experiment file `chaos run` was given, when it is a local file."""
    import click

    ctx = click.get_current_context(silent=True)
    source = ctx.params.get("source") if ctx else None
    return source if isinstance(source, str) and Path(source).is_file() else None


def experiment_of(experiment: dict[str, Any], lab: Lab) -> tuple[Experiment, Lab]:
    """The experiment as dnslab reads it (its file when there is one), and the lab it runs on."""
    source = source_file()
    if source:
        exp = load_experiment(source, lab)
    else:  # `dry` is what `chaos run` adds; the rest is the experiment as given
        data = {k: v for k, v in experiment.items() if k != "dry"}
        name = "-".join("".join(c if c.isalnum() else " " for c in str(data.get("title", ""))).split())
        exp = parse_experiment(data, lab, source="<chaos run>", name=(name.lower() or "experiment")[:60])
    return exp, lab_for(exp, lab)


# --- start and finish -------------------------------------------------------------------------------

def start(experiment: dict[str, Any], configuration: dict[str, Any] | None) -> Session:
    """Everything `fab chaos` does before the method, then lay the method out for Chaos Toolkit."""
    global ACTIVE
    from lab.local.runlock import lab_lock
    from lab.providers import connect_lab

    exp, run_lab = experiment_of(experiment, lab_of(configuration))
    lock = ExitStack()
    lock.enter_context(lab_lock(f"run {exp.name} (chaos run)"))
    try:
        run = Run(run_lab, connect_lab(run_lab), exp, settings=settings_of(exp, None), before=before_run)
        run.start()  # as `fab chaos`: a dead run finished, deploy, health, the run directory, undo log
    except BaseException:
        lock.close()
        raise
    ACTIVE = session = Session(run=run, lock=lock)
    run.start_probes()
    t0 = time.monotonic()
    with console.status("warmup"):
        _sleep_until(t0 + run.phases.warmup_end)
    run.note("steady_start")
    with console.status("steady state"):
        _sleep_until(t0 + run.phases.method_start)
    experiment["method"][:] = session_method(session)
    return session


def session_method(session: Session) -> list[dict[str, Any]]:
    """The method as Chaos Toolkit plays it: dnslab's, repetitions laid out, each activity's pause the
    gap to its offset (the control narrows it to the time left when the activity comes)."""
    out, previous = [], 0.0
    for step in session.run.steps:
        activity = activity_dict(step.activity)  # type: ignore[arg-type]
        activity.pop("at", None)
        activity["pauses"] = {"before": round(step.offset_s - previous, 3)}
        previous = step.offset_s
        session.steps[id(activity)] = step
        out.append(activity)
    return out


def _sleep_until(deadline: float) -> None:
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.2, left))


def finish(session: Session, journal: dict[str, Any] | None) -> Path:
    """Everything `fab chaos` does after the method: the rollbacks Chaos Toolkit did not play and every
    undo, stop the load and samplers, health, collect; then Chaos Toolkit's journal and the report."""
    global ACTIVE
    from chaos.interrupts import deferred

    run = session.run
    status = (journal or {}).get("status")
    if status in ("interrupted", "aborted", "failed") and run.status == "completed":
        run.status = status
        run.errors.append(f"chaos run ended {status}")
    try:
        with deferred(console):

            def key(func: str, arguments: dict[str, Any]) -> tuple[str, str]:
                return func, json.dumps(arguments, sort_keys=True)

            done = session.ctk_done
            run.exp = replace(run.exp, rollbacks=tuple(
                a for a in run.exp.rollbacks if key(a.call.func, dict(a.call.arguments)) not in done))
            run.undo[:] = [u for u in run.undo if key(u.func, u.arguments) not in done]
            after = run.finish()  # the rest of the rollback, probes stopped, health, collect, undo log closed
            if journal is not None:
                write_json(run.dir / CTK_JOURNAL, journal)
            report = subprocess.run([sys.executable, "-m", "reports", str(run.dir)], capture_output=True,
                                    text=True)
            if report.returncode != 0:
                console.print(f"[red]the report failed: {' '.join(report.stderr.split())[-300:]}[/]")
    finally:
        ACTIVE = None
        session.lock.close()
    if not after["ok"]:
        raise ActionFailed(f"the lab is not healthy after rollback: {after}; data in {run.dir}")
    return run.dir


# --- during the method --------------------------------------------------------------------------------

def before_activity(session: Session, activity: dict[str, Any]) -> None:
    """Note the activity; a method activity's pause becomes the time left until its offset."""
    session.current = activity
    step = session.steps.get(id(activity))
    if step is None or session.method_t0 is None:
        return
    check_slip(session.run.pace)
    left = session.method_t0 + session.run.pace.due(step) - time.monotonic()
    activity["pauses"] = {"before": round(max(0.0, left), 3)}


def after_activity(session: Session, activity: dict[str, Any]) -> None:
    """A method activity ended: later slots move by the time it ran past its own (chaos.timeline.Pace)."""
    step = session.steps.get(id(activity))
    if step is not None and session.method_t0 is not None:
        session.run.pace.ran(step, time.monotonic() - session.method_t0)


def end_of_method(session: Session) -> None:
    """Wait out the recovery after the method's last slot, as `fab chaos` does."""
    run = session.run
    t0 = session.method_t0 if session.method_t0 is not None else time.monotonic()
    with console.status("recovery"):
        span = method_span_s(schedule(run.exp.method)) + run.pace.slip_s
        _sleep_until(t0 + span + run.exp.timing.recover_s)
    run.note("recover_end")


def judge_window(session: Session, which: str) -> None:
    """Fetch the query records so far and keep those of the last window_s seconds for the probes."""
    run = session.run
    end = run.guest_now()
    load = run.lab.load
    time.sleep(0.6 + load.timeout_ms / 1000 * max(1, load.attempts))  # flushed every 0.5 s, after answers
    lo = end - int(run.exp.window_s * 1e9)
    session.window = probes.window(records_so_far(run), lo, end)
    run.windows[f"ctk_{which}"] = [lo, end]


def records_so_far(run: Run) -> Any:
    """The query records the load generator has flushed so far (a DataFrame with queries.csv's columns)."""
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="dnslab-ctk-") as tmp:
        collect.fetch_records(run.conn, f"{run.remote}/records", Path(tmp))
        out = Path(tmp) / "queries.csv"
        _, error = collect.merge_records(Path(tmp), out)
        if error is not None or not out.is_file():
            raise ActionFailed(f"merging the records so far failed: {error}")
        return pd.read_csv(out)


# --- what the actions and probes do ---------------------------------------------------------------------

def act(func: Any, arguments: dict[str, Any], configuration: dict[str, Any]) -> dict[str, Any]:
    """Run a dnslab action: in the session's run (its event and undo recorded), else on the lab directly."""
    session = ACTIVE
    if session is None:
        lab = lab_of(configuration)
        from lab.providers import connect_lab

        outcome = func(actions.Target(connect_lab(lab), lab), **arguments)
        return outcome.event(actions.kind_in_method(func.__name__))
    run, start_t = session.run, utc_iso()
    activity = session.current or {"type": "action", "name": func.__name__}
    part = session.phase
    try:
        if part != "rollbacks":  # the undo on disk before the fault, as Run.perform does
            run.undo.expect(actions.planned_undo(run.target, func.__name__, arguments))
        outcome = func(run.target, **arguments)
    except LabError as err:
        _done(run, ActivityDone(part, activity, start_t, "failed", error=str(err)))
        raise
    kind = "rollback" if part == "rollbacks" else actions.kind_in_method(func.__name__)
    event = outcome.event(kind)
    run.record(event)
    if part == "rollbacks":
        session.ctk_done.add((func.__name__, json.dumps(arguments, sort_keys=True)))
    else:
        run.undo.extend(outcome.undo)
    _done(run, ActivityDone(part, activity, start_t, "succeeded", event,
                            said=f"{outcome.action} {outcome.target}" if part == "rollbacks"
                            else f"{activity.get('name')}: {outcome.action} {outcome.target}"))
    return event


def _done(run: Run, done: ActivityDone) -> None:
    """Tell the run's subscribers (the console, the journal) that an activity or rollback ran."""
    (run.bus.rollback_done if done.part == "rollbacks" else run.bus.activity_done)(run, done)


def method_probe(func: Any, arguments: dict[str, Any], configuration: dict[str, Any]) -> dict[str, Any]:
    """Run a probe of the lab (a JSON document); in a session it is also kept in the run directory."""
    session = ACTIVE
    if session is None:
        lab = lab_of(configuration)
        from lab.providers import connect_lab

        return func(actions.Target(connect_lab(lab), lab), **arguments)
    run = session.run
    result = func(run.target, **arguments)
    out = write_json(run.dir / f"{func.__name__}.json", result)
    run.note(func.__name__, file=out.name)
    return result


def steady_probe(func: Any, arguments: dict[str, Any], configuration: dict[str, Any]) -> float:
    """A steady-state probe over the session's current window of query records."""
    session = ACTIVE
    if session is None:
        raise LabError(f"{func.__name__}: no dnslab run in progress; declare the dnslab control in the "
                       "experiment (controls: [{name: dnslab, provider: {type: python, module: "
                       "chaos.ctk.control}}])")
    if session.window is None:
        judge_window(session, "probe")
    return round(float(func(session.window, **arguments)), 6)
