"""journal.json: what a run did, in the spirit of a Chaos Toolkit journal: the data (pure) and its
subscriber to the run's events (`JournalWriter`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chaos.events import ActivityDone, Finished, Handler
from chaos.experiment import Activity
from lab.local.atomic import write_json


def utc_iso(t_ns: int | None = None) -> str:
    """UTC ISO 8601 with milliseconds, e.g. 2026-01-02T03:04:05.678Z."""
    moment = datetime.now(UTC) if t_ns is None else datetime.fromtimestamp(t_ns / 1e9, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def activity_dict(act: Activity) -> dict[str, Any]:
    """An activity as the experiment file spells it."""
    out: dict[str, Any] = {"type": act.type, "name": act.name,
                           "provider": {"type": "python", "module": act.call.module, "func": act.call.func,
                                        "arguments": dict(act.call.arguments)}}
    if act.at is not None:
        out["at"] = act.at
    if act.before or act.after:
        out["pauses"] = {"before": act.before, "after": act.after}
    return out


@dataclass
class Journal:
    """Collects the run's activities as they happen and renders the journal."""

    experiment: dict[str, Any]
    start: str = field(default_factory=utc_iso)
    run: list[dict[str, Any]] = field(default_factory=list)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)

    def record(self, part: str, activity: dict[str, Any], start: str, status: str,
               output: Any = None, error: str | None = None) -> None:
        """Add one activity run to `run` or `rollbacks`."""
        entry: dict[str, Any] = {"activity": activity, "status": status, "start": start, "end": utc_iso(),
                                 "output": output}
        if error:
            entry["exception"] = [error]
        (self.run if part == "run" else self.rollbacks).append(entry)

    def render(self, status: str, steady_states: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        """The journal as plain data; `status` is completed | failed | interrupted | aborted."""
        end = utc_iso()
        deviated = any(not verdict["ok"] for phase in steady_states.values() for verdict in phase.values())
        return {"chaoslib-version": None, "engine": "dnslab.chaos", "experiment": self.experiment,
                "start": self.start, "end": end, "status": status, "deviated": deviated,
                "steady_states": steady_states, "run": self.run, "rollbacks": self.rollbacks, **extra}


class JournalWriter(Handler):
    """The journal as a subscriber (chaos.events): collects each activity and rollback, and writes
    RUN_DIR/journal.json when the run finishes."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def activity_done(self, run: Any, done: ActivityDone) -> None:
        self.journal.record("run", done.activity, done.start, done.status, output=done.output,
                            error=done.error)

    def rollback_done(self, run: Any, done: ActivityDone) -> None:
        self.journal.record("rollbacks", done.activity, done.start, done.status, output=done.output,
                            error=done.error)

    def finished(self, run: Any, end: Finished) -> None:
        extra = {"errors": run.errors, "health_after": end.after, "steady_state_windows_ns": run.windows}
        write_json(run.dir / "journal.json", self.journal.render(end.status, end.steady, extra))
