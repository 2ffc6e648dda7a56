"""The timeline: explicit offsets, pauses, and the phases of a run (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from chaos.timeline import Pace, method_span_s, phases, schedule


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


def test_a_pause_counts_from_when_the_action_before_it_ended():
    """A crash that took 1.2 s to land (SSH, the script) is restarted 3 s after it, not 1.8 s."""
    kill, restart, kill2 = schedule([A("kill", after=3), A("restart", after=2), A("kill 2")])
    pace = Pace()
    assert pace.due(kill) == 0
    pace.ran(kill, 1.2)
    assert pace.due(restart) == pytest.approx(4.2)
    pace.ran(restart, 4.2 + 10.0)  # a container start under TCG
    assert pace.due(kill2) == pytest.approx(14.2 + 2)


def test_the_slip_never_shrinks():
    a, b = schedule([A("a", after=5), A("b")])
    pace = Pace()
    pace.ran(a, 3.0)
    pace.ran(b, 5.5)  # b ran on time after a's slip: no new slip, and none taken back
    assert pace.slip_s == pytest.approx(3.0)


def test_a_run_too_far_behind_its_plan_stops_in_one_line():
    from chaos.recording import MAX_SLIP_S
    from chaos.runner import check_slip
    from lab.model.errors import ActionFailed

    pace = Pace(slip_s=MAX_SLIP_S + 1)
    with pytest.raises(ActionFailed, match=r"fell \d+ s behind its plan .* fewer repetitions"):
        check_slip(pace)
    check_slip(Pace(slip_s=MAX_SLIP_S))
