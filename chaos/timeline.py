"""The method as a timeline: each activity at an offset (seconds) from the start of the method phase.

Pure. An activity runs at its explicit `at` offset, or `pauses.before` seconds after the previous
activity's slot (plus that activity's `pauses.after`). Offsets never go backwards.

The plan is kept against the clock by a `Pace`: an action takes time (SSH, the guest's script, a
container start: ~1 s and up to ~10 s under TCG), and a pause counts from when the previous activity
ended, so every later slot moves by the time the activities ran past their slots (the slip).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Timed(Protocol):
    name: str
    at: float | None
    before: float
    after: float


@dataclass(frozen=True)
class Step:
    """An activity at its offset (seconds) from the start of the method phase."""

    offset_s: float
    index: int
    activity: Timed


def schedule(activities: Sequence[Timed]) -> list[Step]:
    """Place activities on the time axis; ValueError when an explicit `at` goes backwards."""
    steps: list[Step] = []
    cursor = 0.0
    for index, act in enumerate(activities):
        if act.at is not None:
            if act.at + 1e-9 < cursor:
                raise ValueError(f"activity {index} ({act.name!r}) at +{act.at:g} s comes before "
                                 f"the previous activity's +{cursor:g} s; order the method by time")
            offset = act.at + act.before
        else:
            offset = cursor + act.before
        steps.append(Step(offset_s=offset, index=index, activity=act))
        cursor = offset + act.after
    return steps


@dataclass
class Pace:
    """The slip so far: how far (seconds) the activities ran past their slots. It only grows."""

    slip_s: float = 0.0

    def due(self, step: Step) -> float:
        """When `step` runs, in seconds from the start of the method phase."""
        return step.offset_s + self.slip_s

    def ran(self, step: Step, ended_s: float) -> None:
        """`step` ended `ended_s` seconds after the start of the method phase: later slots move with it."""
        self.slip_s = max(self.slip_s, ended_s - step.offset_s)


def method_span_s(steps: Sequence[Step]) -> float:
    """Seconds from the start of the method phase to its last activity's slot."""
    return max((s.offset_s + s.activity.after for s in steps), default=0.0)


@dataclass(frozen=True)
class Phases:
    """Offsets (seconds from load start) of a run's phases."""

    warmup_end: float
    method_start: float
    method_end: float
    end: float


def phases(warmup_s: float, steady_s: float, recover_s: float, steps: Sequence[Step]) -> Phases:
    """Load start -> warmup -> steady window -> method (timeline) -> recovery -> end."""
    method_start = warmup_s + steady_s
    method_end = method_start + method_span_s(steps)
    return Phases(warmup_s, method_start, method_end, method_end + recover_s)
