"""The run on the console: a subscriber (chaos.events) that draws the timeline's progress bar (rich)
and prints a line for each activity and rollback."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from chaos.events import ActivityDone, Handler


class ConsoleView(Handler):
    """Draws on `console` (stderr); the bar lives from the timeline's first phase to its end."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def started(self, run: Any) -> None:
        self.console.print(f"[bold]{run.exp.title}[/] -> {run.dir}")

    def progress(self, run: Any, phase: str | None, done_s: float, total_s: float) -> None:
        if phase is None:
            if self._bar is not None:
                if self._task is not None:
                    self._bar.update(self._task, completed=total_s, description="done")
                self._bar.stop()
            self._bar = self._task = None
            return
        if self._bar is None:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[total_s]:.0f} s"), console=self.console,
                                 transient=False)
            self._bar.start()
            self._task = self._bar.add_task(phase, total=total_s, total_s=total_s)
        assert self._task is not None
        self._bar.update(self._task, description=phase, completed=done_s)

    def activity_done(self, run: Any, done: ActivityDone) -> None:
        if done.status != "succeeded":
            return
        at = f"+{done.offset_s:5.1f} s  " if done.offset_s is not None else ""
        self.console.print(f"  {at}{done.said}")

    def rollback_done(self, run: Any, done: ActivityDone) -> None:
        if done.status == "succeeded":
            self.console.print(f"  rollback: {done.said}")
