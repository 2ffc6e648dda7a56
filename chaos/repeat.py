"""Repeated faults in one run: an experiment's method played N times under one load run (pure).

`repeat` in the `dnslab` entry of an experiment file's `extensions`:

    repeat:
      times: 5               # how many times the method runs (n faults per fault action)
      settle_s: 3            # seconds after the method's last activity before the next repetition
      rotate: [rs2, rs3, rs1]  # optional: repetition k targets rotate[k % len] (every `resolver` argument)

Repetition k runs each activity at its offset plus k * (the method's span + settle_s); its name
gets ` #k` (from 1) and, when rotating, the target's name in place of the first one's. Without
`rotate` every repetition hits the same target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from chaos.timeline import method_span_s, schedule

KEYS = ("times", "settle_s", "rotate")


@dataclass(frozen=True)
class Repeat:
    """How often the method runs, the settle gap between repetitions, and the targets in turn."""

    times: int = 1
    settle_s: float = 0.0
    rotate: tuple[str, ...] = ()


def expand(method: Sequence[Any], repeat: Repeat) -> tuple[Any, ...]:
    """The method repeated: activities (chaos.experiment.Activity) with explicit offsets and names."""
    if repeat.times <= 1 and not repeat.rotate:
        return tuple(method)
    steps = schedule(method)
    period = method_span_s(steps) + repeat.settle_s
    out = []
    for k in range(repeat.times):
        target = repeat.rotate[k % len(repeat.rotate)] if repeat.rotate else None
        for step in steps:
            act = step.activity
            arguments = dict(act.call.arguments)
            name = act.name
            if target is not None and "resolver" in arguments:
                name = name.replace(str(arguments["resolver"]), target)  # "kill rs2" -> "kill rs3"
                arguments["resolver"] = target
            out.append(replace(act, name=f"{name} #{k + 1}", at=step.offset_s + k * period, before=0.0,
                               call=replace(act.call, arguments=arguments)))
    return tuple(out)
