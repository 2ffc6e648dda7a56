"""Analysis against the planted synthetic run: every metric equals its ground truth exactly."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.synthetic import (
    MS,
    PLANTED,
    REUSED_PORT,
    T0_NS,
    meta_for,
    planted_events,
    planted_ipvs,
    planted_queries,
    write_planted_run,
    write_run,
)
from reports.analysis import analyse
from reports.load import load_run


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    run = load_run(write_planted_run(tmp_path_factory.mktemp("runs") / "planted"))
    return run, analyse(run.queries, run.events, run.ipvs, run.meta)


def _answers(records: list[dict]) -> list[tuple[int, dict]]:
    """Plain-Python oracle: (answer time ns, record) of ok queries."""
    return [(r["t_send_ns"] + round(r["latency_ms"] * MS), r) for r in records if r["outcome"] == "ok"]


def _oracle_stall(records: list[dict], lo: int, hi: int | None) -> float:
    times = sorted(t for t, _ in _answers(records))
    gaps = [(a, b - a) for a, b in zip(times, times[1:], strict=False) if b > lo and (hi is None or a < hi)]
    return max(g for _, g in gaps) / MS


def test_totals_match_ground_truth(planted) -> None:
    _, a = planted
    s = a.summary()
    assert (s["queries"], s["ok"], s["dropped"], s["errors"], s["rcode_failures"]) == (
        PLANTED["queries"],
        PLANTED["ok"],
        PLANTED["dropped"],
        PLANTED["errors"],
        PLANTED["rcode_failures"],
    )
    assert s["drop_rate"] == PLANTED["dropped"] / PLANTED["queries"]


def test_max_stall_is_the_planted_blackout(planted) -> None:
    _, a = planted
    assert a.max_stall_ms == PLANTED["max_stall_ms"] == 492.0
    assert a.max_stall_at_ns == T0_NS + 1009 * MS  # the last answer before the blackout (sent at 990 ms)


def test_every_fault_matches_ground_truth(planted) -> None:
    _, a = planted
    got = [
        {
            k: f.summary()[k]
            for k in (
                "action",
                "target",
                "failover_window_ms",
                "failed",
                "detection_ms",
                "detection_by_proto",
                "pinned_ports",
                "blackholed_ports",
            )
        }
        | {"t_ms": (f.t_ns - T0_NS) // MS}
        for f in a.faults
    ]
    assert got == PLANTED["faults"]


def test_detection_is_per_protocol_and_ignores_removal_before_the_fault(planted) -> None:
    # rs2 is absent at 1900 ms (before its fault): that does not count. From 2500 ms its UDP weight is
    # 0 while TCP keeps weight 1: a UDP load is rid of it then, not when TCP follows at 3200 ms.
    _, a = planted
    kill = a.faults[1]
    assert a.load_proto == "udp"
    assert kill.detection_ms == 500.0
    assert kill.detection_by_proto == {"udp": 500.0, "tcp": 1200.0}
    assert kill.span_end_ns == T0_NS + 4000 * MS  # the rollback, not the note at 3000 ms


def test_span_stalls(planted) -> None:
    _, a = planted
    records = planted_queries()
    spans = [
        (T0_NS + 1000 * MS, T0_NS + 2000 * MS),
        (T0_NS + 2000 * MS, T0_NS + 4000 * MS),
        (T0_NS + 5000 * MS, None),
    ]
    expected = [492.0, 36.0, 24.0]
    assert [f.max_stall_ms for f in a.faults] == expected
    assert [_oracle_stall(records, lo, hi) for lo, hi in spans] == expected


def test_latency_percentiles_overall(planted) -> None:
    _, a = planted
    latencies = [r["latency_ms"] for r in planted_queries() if r["outcome"] == "ok"]
    q100 = statistics.quantiles(latencies, n=100, method="inclusive")
    q1000 = statistics.quantiles(latencies, n=1000, method="inclusive")
    assert a.latency_ms == {"p50": q100[49], "p90": q100[89], "p99": q100[98], "p99.9": q1000[998]}
    assert a.latency_ms["p50"] == 9.0


def test_latency_percentiles_per_second(planted) -> None:
    _, a = planted
    by_second: dict[int, list[float]] = {}
    for r in planted_queries():
        if r["outcome"] == "ok":
            by_second.setdefault((r["t_send_ns"] - T0_NS) // 1_000_000_000, []).append(r["latency_ms"])
    table = a.latency_per_second
    assert list(table.index) == [float(s) for s in sorted(by_second)]
    for second, values in by_second.items():
        q = statistics.quantiles(values, n=100, method="inclusive")
        row = table.loc[float(second)]
        assert (row["p50"], row["p90"], row["p99"], row["count"]) == pytest.approx(
            (q[49], q[89], q[98], len(values)), abs=1e-9
        )


def test_answers_per_second_per_resolver_by_answer_time(planted) -> None:
    _, a = planted
    counts = Counter(((t - T0_NS) // 1_000_000_000, r["resolver"]) for t, r in _answers(planted_queries()))
    table = a.answers_per_second
    assert list(table.columns) == ["rs1", "rs2", "rs3"]
    got = {(int(s), name): int(v) for s, row in table.iterrows() for name, v in row.items() if v}
    assert got == dict(counts)
    assert table.loc[6.0, "rs2"] == 1  # sent at 5990 ms, answered at 6009 ms: counted by answer time
    assert a.summary()["answers_by_resolver"] == {"rs1": 168, "rs2": 174, "rs3": 111}


def test_failures_by_outcome_and_rcode(planted) -> None:
    _, a = planted
    assert a.failures.to_dict("records") == [
        {"outcome": "timeout", "rcode": "-", "count": 145},
        {"outcome": "error", "rcode": "-", "count": 1},
        {"outcome": "rcode", "rcode": "SERVFAIL", "count": 1},
    ]


def test_reused_port_is_black_holed_until_rollback(planted) -> None:
    _, a = planted
    blackhole, kill, stop = (f.pinning.set_index("src_port") for f in a.faults)
    assert list(kill.index) == [REUSED_PORT]  # fresh ports are never reused
    assert kill.loc[REUSED_PORT].to_dict() == {
        "before": "rs2",
        "after": "",
        "ok_after": 0,
        "failed_after": 50,
    }
    assert blackhole.loc[REUSED_PORT].to_dict() == {
        "before": "rs2",
        "after": "rs2",
        "ok_after": 13,
        "failed_after": 12,
    }
    assert stop.loc[REUSED_PORT].to_dict() == {
        "before": "rs2",
        "after": "rs2",
        "ok_after": 25,
        "failed_after": 0,
    }


def test_row_order_does_not_change_the_numbers(planted, tmp_path: Path) -> None:
    _, a = planted
    shuffled = planted_queries()
    np.random.default_rng(7).shuffle(shuffled)
    run = load_run(
        write_run(
            tmp_path / "shuffled", meta_for("shuffled", "planted"), shuffled, planted_events(), planted_ipvs()
        )
    )
    b = analyse(run.queries, run.events, run.ipvs, run.meta)
    assert b.summary() == a.summary()


def test_run_without_faults_reports_what_it_has(tmp_path: Path) -> None:
    steady = [r for r in planted_queries() if r["t_send_ns"] < T0_NS + 1000 * MS]
    run = load_run(write_run(tmp_path / "steady", {"run_id": "steady"}, steady, [], []))
    a = analyse(run.queries, run.events, run.ipvs, run.meta)
    s = a.summary()
    assert (s["queries"], s["ok"], s["dropped"], s["faults"]) == (100, 98, 0, [])
    assert s["max_stall_ms"] == 12.0  # the regular pattern's largest gap (error at 701 ms is not ok)


def test_all_failed_run_has_no_stall(tmp_path: Path) -> None:
    rows = [
        r | {"outcome": "timeout", "latency_ms": None, "rcode": None, "resolver": None}
        for r in planted_queries()[:10]
    ]
    run = load_run(write_run(tmp_path / "dead", {}, rows, [], []))
    a = analyse(run.queries, run.events, run.ipvs, run.meta)
    assert (a.ok, a.dropped, a.max_stall_ms, a.latency_ms["p50"]) == (0, 10, None, None)
    assert a.answers_per_second.empty and isinstance(a.latency_per_second, pd.DataFrame)


def test_a_fault_that_meets_a_stalled_lab_is_left_out_of_the_statistics(tmp_path: Path) -> None:
    """Kills of rs2 at 2000 and 4000 ms (restarted at 2500). After the first, rs2's queries fail for
    100 ms; from 3000 ms every query fails (the guest stalled) until 4300 ms: the second kill measures
    the stall, so it is marked excluded and fault_stats counts only the first."""
    rows = []
    for i in range(600):
        t_ms, resolver = 10 * i, ("rs1", "rs2")[i % 2]
        failed = (200 <= i < 210 and resolver == "rs2") or 300 <= i < 430
        rows.append({"t_send_ns": T0_NS + t_ms * MS, "latency_ms": None if failed else 2.0,
                     "outcome": "timeout" if failed else "ok", "rcode": None if failed else "NOERROR",
                     "resolver": None if failed else resolver, "proto": "udp", "qname": "who.lab.test",
                     "qtype": "TXT", "src_port": 20000 + i, "worker": f"w{i % 4}"})
    events = [{"t_ns": T0_NS + t * MS, "kind": "fault", "action": "kill", "target": "rs2",
               "detail": {"real_server": "192.168.100.12:53", "signal": "KILL"}} for t in (2000, 4000)]
    events.append({"t_ns": T0_NS + 2500 * MS, "kind": "rollback", "action": "restart_resolver",
                   "target": "rs2", "detail": {"real_server": "192.168.100.12:53"}})
    ipvs = [{"t_ns": T0_NS + 100 * k * MS, "vip": "192.168.100.100:53", "proto": "udp",
             "real_server": "192.168.100.12:53", "weight": 1, "active_conns": 0, "inactive_conns": 0}
            for k in range(60)]
    run = load_run(write_run(tmp_path / "stalled", meta_for("stalled", "planted", None), rows, events, ipvs))
    a = analyse(run.queries, run.events, run.ipvs, run.meta)
    first, second = a.faults
    assert first.served_before == 1.0 and first.excluded_why is None
    assert second.served_before == 0.0 and "stalled" in second.excluded_why
    stats = a.summary()["fault_stats"]["kill"]
    assert (stats["n"], stats["excluded"]) == (1, 1)
    assert stats["failover_window_ms"]["median"] == first.failover_window_ms == 90.0


@pytest.mark.parametrize(("detail", "expected"), [
    ({"started_by": "policy", "started_ns": T0_NS + 2300 * MS}, 300.0),  # Docker's policy, 300 ms after
    ({"started_by": "runner", "started_ns": T0_NS + 2500 * MS}, None),  # restart "no": the runner did
    ({}, None),  # systemd: `systemctl restart` says nothing
    ({"started_by": "policy", "started_ns": T0_NS + 1000 * MS}, None),  # a start before the kill
    ({"started_by": "policy", "started_ns": "soon"}, None),
])
def test_a_policy_restart_is_timed_from_its_crash(tmp_path: Path, detail: dict,
                                                  expected: float | None) -> None:
    """restarted_ms: from a kill to the container's start by Docker's restart policy, as the restart
    action after it reports; the spread goes to fault_stats like every other figure."""
    rows = [{"t_send_ns": T0_NS + 10 * i * MS, "latency_ms": 2.0, "outcome": "ok", "rcode": "NOERROR",
             "resolver": ("rs1", "rs2")[i % 2], "proto": "udp", "qname": "who.lab.test", "qtype": "TXT",
             "src_port": 20000 + i, "worker": f"w{i % 4}"} for i in range(400)]
    rs2 = "192.168.100.12:53"
    events = [{"t_ns": T0_NS + 2000 * MS, "kind": "fault", "action": "kill_resolver", "target": "rs2",
               "detail": {"real_server": rs2, "signal": "KILL"}},
              {"t_ns": T0_NS + 2500 * MS, "kind": "rollback", "action": "restart_resolver", "target": "rs2",
               "detail": {"real_server": rs2, **detail}}]
    ipvs = [{"t_ns": T0_NS + 100 * k * MS, "vip": "192.168.100.100:53", "proto": "udp", "real_server": rs2,
             "weight": 1, "active_conns": 0, "inactive_conns": 0} for k in range(40)]
    run = load_run(write_run(tmp_path / "restart", meta_for("restart", "planted", None), rows, events, ipvs))
    a = analyse(run.queries, run.events, run.ipvs, run.meta)
    (fault,) = a.faults
    assert fault.restarted_ms == expected
    assert a.summary()["faults"][0]["restarted_ms"] == expected
    spread = a.summary()["fault_stats"]["kill_resolver"]["restarted_ms"]
    assert (spread or {}).get("median") == expected
