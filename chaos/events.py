"""What a run tells its subscribers, in the manner of chaostoolkit-lib's event registry.

The runner (chaos.runner.Run) emits; it does not draw, log or write those files itself. Subscribers:
the console view (chaos.progress), the journal (chaos.journal.JournalWriter) and the events.jsonl
writer (`EventsFile` below). A subscriber that fails lets the others hear the event first, then the
run sees its error (losing a record must not pass silently).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lab.local.atomic import write_atomic


@dataclass(frozen=True)
class ActivityDone:
    """An activity of the method (part `run`) or a rollback (part `rollbacks`) that ran."""

    part: str
    activity: dict[str, Any]  # as the experiment file spells it (chaos.journal.activity_dict)
    start: str  # UTC ISO, when it began
    status: str  # succeeded | failed
    output: Any = None
    error: str | None = None
    said: str = ""  # one line for the operator, e.g. `kill_resolver rs2`
    offset_s: float | None = None  # its place on the timeline, when it has one


@dataclass(frozen=True)
class Finished:
    """The end of a run, once its data is in: what the journal and meta.json are made of."""

    status: str  # completed | failed | interrupted | aborted
    steady: dict[str, Any]  # the steady-state verdicts, by window
    after: dict[str, Any]  # the lab's health after the rollback
    events: list[dict[str, Any]]  # every event of the run, sorted by time


class Handler:
    """A subscriber: override what it needs (every method does nothing here)."""

    def started(self, run: Any) -> None:
        """The run has its directory and is about to start its probes."""

    def progress(self, run: Any, phase: str | None, done_s: float, total_s: float) -> None:
        """The timeline is in `phase`, `done_s` of `total_s` seconds in; phase None: it is over."""

    def recorded(self, run: Any, event: dict[str, Any]) -> None:
        """An events.jsonl event: a note, a fault or a rollback."""

    def activity_done(self, run: Any, done: ActivityDone) -> None:
        """An action or probe of the method ran (or failed)."""

    def rollback_done(self, run: Any, done: ActivityDone) -> None:
        """A rollback or an undo ran (or failed)."""

    def finished(self, run: Any, end: Finished) -> None:
        """The run is over and its data collected."""


class Registry:
    """The run's subscribers; each emit calls every one of them in order."""

    def __init__(self, *handlers: Handler) -> None:
        self.handlers = list(handlers)

    def register(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def _emit(self, name: str, *args: Any) -> None:
        first: Exception | None = None
        for handler in self.handlers:
            try:
                getattr(handler, name)(*args)
            except Exception as err:  # noqa: BLE001 - the other subscribers still hear it
                first = first or err
        if first is not None:
            raise first

    def started(self, run: Any) -> None:
        self._emit("started", run)

    def progress(self, run: Any, phase: str | None, done_s: float, total_s: float) -> None:
        self._emit("progress", run, phase, done_s, total_s)

    def recorded(self, run: Any, event: dict[str, Any]) -> None:
        self._emit("recorded", run, event)

    def activity_done(self, run: Any, done: ActivityDone) -> None:
        self._emit("activity_done", run, done)

    def rollback_done(self, run: Any, done: ActivityDone) -> None:
        self._emit("rollback_done", run, done)

    def finished(self, run: Any, end: Finished) -> None:
        self._emit("finished", run, end)


class EventsFile(Handler):
    """RUN_DIR/events.jsonl: each event appended as it happens (a crash keeps what came before), then
    the whole run, sorted by time, replaced atomically when it finishes."""

    def recorded(self, run: Any, event: dict[str, Any]) -> None:
        with (run.dir / "events.jsonl").open("a") as f:
            f.write(json.dumps(event) + "\n")

    def finished(self, run: Any, end: Finished) -> None:
        write_atomic(run.dir / "events.jsonl", "".join(json.dumps(e) + "\n" for e in end.events))
