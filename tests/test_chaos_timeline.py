"""The timeline: explicit offsets, pauses, and the phases of a run (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from chaos.timeline import method_span_s, phases, schedule


@dataclass(frozen=True)
class A:
    name: str
    at: float | None = None
    before: float = 0.0
    after: float = 0.0


def test_explicit_offsets_are_kept():
    steps = schedule([A("kill", at=0), A("restart", at=15)])
    assert [s.offset_s for s in steps] == [0, 15]


def test_pauses_accumulate_from_the_previous_slot():
    steps = schedule([A("a", before=2, after=1), A("b", before=3), A("c", at=10, before=1)])
    assert [s.offset_s for s in steps] == [2, 6, 11]
    assert method_span_s(steps) == 11


def test_offsets_never_go_backwards():
    with pytest.raises(ValueError, match=r"activity 1 \('b'\) at \+3 s comes before .* \+5 s"):
        schedule([A("a", at=5), A("b", at=3)])


def test_phases_of_a_run():
    steps = schedule([A("kill", at=0), A("restart", at=8)])
    p = phases(2, 6, 10, steps)
    assert (p.warmup_end, p.method_start, p.method_end, p.end) == (2, 8, 16, 26)


def test_an_empty_method_is_a_steady_run():
    p = phases(1, 10, 0, schedule([]))
    assert p.method_start == p.method_end == p.end == 11
