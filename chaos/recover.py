"""Finish a run whose runner died or lost the lab: `fab recover`, and the start of the next run.

A run logs its pending undo in RUN_DIR/running.json and names that directory in the lab state's
marker (chaos.undo_log). Whoever takes the lab lock next and finds the marker knows the run is
dead: the kernel drops the lock with its holder, however it ended (SIGKILL, a reboot of the host).
Recovery rebuilds the run from running.json (`resume`) and does what its runner could not, as
`Run.finish` does it: the experiment's rollbacks and every logged undo (all idempotent), stopping
its guest probes (only processes that still are that run's), the health check, and collecting its
data into the run directory with status `interrupted`. Then running.json and the marker go.
Guest probes of any other dead run are stopped as well (`stop_stray_probes`).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chaos import guest, probes
from chaos.experiment import Activity, Call, Experiment, Timing
from chaos.interrupts import deferred
from chaos.journal import utc_iso
from chaos.link import Link
from chaos.runner import Run, console
from chaos.undo_log import VERSION, clear_marker, marked_run, read_state, undo_calls
from lab.local.atomic import write_atomic, write_json
from lab.local.state import RUN_INCOMPLETE, RUN_INTERRUPTED
from lab.model.config import Lab
from lab.model.errors import ActionFailed, LabError
from lab.model.parse import parse_lab
from lab.ssh import remote


def _activity(data: dict[str, Any]) -> Activity:
    provider = data["provider"]
    return Activity(type=data["type"], name=data["name"],
                    call=Call(provider["module"], provider["func"], dict(provider.get("arguments") or {})))


def read_events(run_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """events.jsonl's events as the dead run appended them, and how many lines were unreadable."""
    events, bad = [], 0
    try:
        text = (run_dir / "events.jsonl").read_text(errors="replace")
    except OSError:
        return [], 0
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(event, dict) and isinstance(event.get("t_ns"), int):
            events.append(event)
        else:
            bad += 1
    return events, bad


def resume(state: dict[str, Any], conn: Any) -> Run:
    """The dead run again, from its running.json, with its events and pending undo."""
    if state.get("version") != VERSION:
        raise ActionFailed(f"{state.get('dir')}/{RUN_INCOMPLETE}: written by another version of dnslab "
                           f"({state.get('version')!r}); run `fab deploy` to clear what it left")
    lab = parse_lab(state["lab"]["raw"], state["lab"]["source"])
    e = state["experiment"]
    exp = Experiment(name=e["name"], path=Path(e["path"]), title=e["title"], description=e["description"],
                     overrides={}, load={} if e["uses_load"] else None, timing=Timing(**e["timing"]),
                     window_s=e["window_s"], hypothesis=(), method=(),
                     rollbacks=tuple(_activity(a) for a in state["rollbacks"]), raw=e.get("raw") or {})
    run = Run(lab, conn, exp, settings=dict(state.get("settings") or {}), run_id=state["run_id"])
    run.dir, run.run_id, run.remote = Path(state["dir"]), state["run_id"], state["remote"]
    run.events, bad = read_events(run.dir)
    if bad:
        run.errors.append(f"{bad} unreadable line(s) of events.jsonl left out (cut when the runner died)")
    run.marks = {ev["action"]: ev["t_ns"] for ev in run.events if ev.get("kind") == "note"}
    run.undo.resume(run.dir, state)
    return run


def recover_dead_run(conn: Any, by: str) -> tuple[Run, dict[str, Any]] | None:
    """Finish the run the lab's marker names, if any: (the run, the health after), else None."""
    run_dir = marked_run()
    if run_dir is None:
        return None
    state = read_state(run_dir) if run_dir.is_dir() else None
    if state is None:  # died before its first write, or the directory was moved away: nothing logged
        clear_marker()
        return None
    run = resume(state, conn)
    pending = len(run.undo) + len(run.exp.rollbacks)
    console.print(f"[yellow]run {run.run_id} did not finish (its runner died or lost the lab): "
                  f"{pending} rollback(s) and undo call(s) to run, then its data is saved[/]")
    run.status = RUN_INTERRUPTED
    run.errors.append(f"the runner stopped before rolling back; {by} finished the run")
    if remote.run(run.conn, f"test -d {shlex.quote(run.remote)}").exited != 0:
        run.incomplete = (f"its records in the lab ({run.remote}) were gone when {by} finished the "
                          "run (the lab was restarted?)")
    with deferred(console):
        after = run.finish()
    return run, after


def stop_stray_probes(conn: Any) -> list[str]:
    """Stop the guest probes of any dead run (a load, sampler or notify reader still running from a
    pidfile under the guest's runs directory, whose command line still names that run); the
    pidfiles stopped."""
    listing = remote.run(conn, f"ls -d {probes.PROBE_PIDFILES} 2>/dev/null; true").stdout.split()
    stopped = []
    for pidfile in listing:
        owner = pidfile.rsplit("/", 1)[0] + "/"
        if remote.run_script(conn, guest.script("owned.sh"), pidfile, owner).exited == 0:
            probes.stop_background(conn, pidfile, "INT" if pidfile.endswith("load.pid") else "TERM",
                                   timeout_s=30, owner=owner)
            stopped.append(pidfile)
        remote.run(conn, f"rm -f {shlex.quote(pidfile)}")
    return stopped


def before_run(conn: Any) -> None:
    """At the start of a run (holding the lab lock): finish a dead run, stop stray guest probes."""
    link = conn if isinstance(conn, Link) else Link(conn)
    retry, link.retry = link.retry, True
    try:
        done = recover_dead_run(link, "the start of the next run")
        if done is not None:
            console.print(f"[yellow]finished the dead run: data in {done[0].dir}[/]")
        for pidfile in stop_stray_probes(link):
            console.print(f"[yellow]stopped a probe left running: {pidfile}[/]")
    finally:
        link.retry = retry


def close_offline(run_dir: Path, reason: str) -> Path:
    """Close a dead run without its lab (a VM that is gone, and its faults with it): meta.json marks
    it incomplete with `reason`; running.json and the marker go."""
    state = read_state(run_dir) or {}
    events, _ = read_events(run_dir)
    events.sort(key=lambda e: e["t_ns"])
    write_atomic(run_dir / "events.jsonl", "".join(json.dumps(e) + "\n" for e in events))
    exp = state.get("experiment") or {}
    write_json(run_dir / "meta.json", {
        "run_id": state.get("run_id", run_dir.name), "experiment": exp.get("name"), "title": exp.get("title"),
        "description": exp.get("description", ""), "settings": state.get("settings") or {},
        "start": utc_iso(events[0]["t_ns"]) if events else None,
        "end": utc_iso(events[-1]["t_ns"]) if events else None, "status": RUN_INTERRUPTED,
        "errors": [f"the runner stopped before rolling back; {reason}"], "incomplete": reason,
        "pending_undo": [asdict(u) for u in undo_calls(state)],
    })
    (run_dir / RUN_INCOMPLETE).unlink(missing_ok=True)
    clear_marker(run_dir)
    return run_dir


def recover_lab(lab: Lab) -> str:
    """`fab recover`: finish the lab's dead run and stop stray probes; a report of what it did."""
    from lab.local.runlock import lab_lock
    from lab.providers import BOOTED, connect_lab, get_provider

    with lab_lock("recover"):
        run_dir = marked_run()
        if run_dir is not None and lab.vm.provider in BOOTED:
            try:
                get_provider(lab).endpoint()
            except LabError:
                if read_state(run_dir) is None:
                    clear_marker()
                    return "nothing to recover: no run of this lab was left unfinished"
                closed = close_offline(run_dir, f"the {lab.vm.provider} lab was down when `fab recover` "
                                                "ran: its faults ended with the VM, and the records "
                                                "kept in it are lost")
                return f"the lab is down, so nothing is left in it; marked {closed} incomplete"
        link = Link(connect_lab(lab))
        link.retry = True
        lines = []
        with deferred(console):
            done = recover_dead_run(link, "`fab recover`")
            stray = stop_stray_probes(link)
        if done is None:
            lines.append("nothing to recover: no run of this lab was left unfinished")
        else:
            run, after = done
            lines.append(f"recovered {run.run_id}: rolled back, data saved in {run.dir} (status interrupted)")
            if not after["ok"]:
                lines.append(f"the lab is still not healthy: {probes.describe_health(after)}; "
                             "`fab deploy` puts it back")
        lines += [f"stopped a probe left running: {p}" for p in stray]
        return "\n".join(lines)
