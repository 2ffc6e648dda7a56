"""Lookup metrics against synthetic runs whose lookups are known: every number equals its ground truth."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from bench.synthetic import (
    LOOKUP_HEADER,
    MS,
    PLANTED,
    PLANTED_LOOKUPS,
    T0_NS,
    planted_lookup_rows,
    planted_queries,
    write_csv,
    write_lookup_run,
    write_planted_run,
)
from lab.model.errors import LabError
from reports.analysis import analyse
from reports.load import load_run

KEYS = ("lookups", "lookups_failed", "lookups_retried", "lookup_p50_ms", "lookup_p99_ms", "lookup_max_ms")
FAULT_KEYS = ("lookups", "lookups_failed", "lookups_retried", "lookup_max_ms")


def _summary(run_dir: Path) -> dict:
    run = load_run(run_dir)
    return analyse(run.queries, run.events, run.ipvs, run.meta).summary()


@pytest.fixture(scope="module")
def lookup_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lookup_run(tmp_path_factory.mktemp("runs") / "lookups")


def test_lookup_totals_and_latency_match_ground_truth(lookup_run: Path) -> None:
    s = _summary(lookup_run)
    assert {k: s[k] for k in KEYS} == {k: PLANTED_LOOKUPS[k] for k in KEYS}


def test_each_fault_counts_the_lookups_first_sent_in_its_span(lookup_run: Path) -> None:
    faults = _summary(lookup_run)["faults"]
    assert [(f["t_ns"] - T0_NS) // MS for f in faults] == [f["t_ms"] for f in PLANTED_LOOKUPS["faults"]]
    assert [{k: f[k] for k in FAULT_KEYS} for f in faults] == [
        {k: f[k] for k in FAULT_KEYS} for f in PLANTED_LOOKUPS["faults"]]


def test_a_lookup_belongs_to_the_span_of_its_first_query(lookup_run: Path) -> None:
    """Drop the one lookup that started before the fault and ended in it, and the one that started in
    the fault and ended after its rollback: only the second changes the fault's numbers."""
    rows = planted_lookup_rows()

    def without(worker: str, lookup_id: int) -> dict:
        kept = [r for r in rows if (r["worker"], r["lookup_id"]) != (worker, lookup_id)]
        run_dir = lookup_run.parent / f"without-{worker}-{lookup_id}"
        run_dir.mkdir()
        for name in ("meta.json", "events.jsonl", "ipvs.csv"):
            (run_dir / name).write_bytes((lookup_run / name).read_bytes())
        write_csv(run_dir / "queries.csv", LOOKUP_HEADER, kept)
        return _summary(run_dir)["faults"][0]

    before = without("glibc", 1)  # first query at 900, retried at 1100 inside the fault's span
    assert (before["lookups"], before["lookups_retried"]) == (7, 5)
    across = without("glibc", 4)  # first query at 2900, answered after the rollback at 3000
    assert (across["lookups"], across["lookups_retried"]) == (6, 4)


def test_rows_in_any_order_give_the_same_lookups(lookup_run: Path, tmp_path: Path) -> None:
    rows = planted_lookup_rows()
    random.Random(7).shuffle(rows)
    run_dir = tmp_path / "shuffled"
    run_dir.mkdir()
    for name in ("meta.json", "events.jsonl", "ipvs.csv"):
        (run_dir / name).write_bytes((lookup_run / name).read_bytes())
    write_csv(run_dir / "queries.csv", LOOKUP_HEADER, rows)
    assert _summary(run_dir) == _summary(lookup_run)


def test_a_run_without_lookup_columns_has_one_lookup_per_query(tmp_path: Path) -> None:
    s = _summary(write_planted_run(tmp_path / "planted"))
    records = planted_queries()
    ok_latency = [r["latency_ms"] for r in records if r["outcome"] == "ok"]
    assert (s["lookups"], s["lookups_failed"], s["lookups_retried"]) == (
        PLANTED["queries"], PLANTED["queries"] - PLANTED["ok"], 0)
    assert s["lookup_max_ms"] == max(ok_latency)
    assert s["lookup_p50_ms"] == float(np.percentile(ok_latency, 50))
    assert [f["lookups_failed"] for f in s["faults"]] == [f["failed"] for f in PLANTED["faults"]]


def _bad(tmp_path: Path, change) -> str:
    run_dir = write_lookup_run(tmp_path / "bad")
    path = run_dir / "queries.csv"
    path.write_text(change(path.read_text()))
    with pytest.raises(LabError) as info:
        load_run(run_dir)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_lookup_columns_come_together_and_count_from_zero(tmp_path: Path) -> None:
    def drop_attempt(text: str) -> str:
        return "\n".join(line.rsplit(",", 1)[0] for line in text.splitlines()) + "\n"

    assert "has column 'lookup_id' but not 'attempt'" in _bad(tmp_path / "a", drop_attempt)
    negative = _bad(tmp_path / "b", lambda t: t.replace(",glibc,1,0\n", ",glibc,1,-1\n", 1))
    assert "column 'attempt' is negative in 1 row(s)" in negative
    empty = _bad(tmp_path / "c", lambda t: t.replace(",glibc,1,0\n", ",glibc,,0\n", 1))
    assert "column 'lookup_id' is empty in 1 row(s)" in empty


def test_report_has_a_lookup_section_with_the_numbers_and_their_definitions(lookup_run: Path) -> None:
    from reports.build import build_report

    summary = build_report(lookup_run)
    html = (lookup_run / "report.html").read_text()
    section = html[html.index("<h2>Lookups</h2>"):html.index("<h2>Faults</h2>")]
    assert "<td><code>lookups_failed</code></td><td class=\"num\">5</td>" in section
    assert "<td><code>lookup_max_ms</code></td><td class=\"num\">252.000</td>" in section
    assert "minus the send time of its first query" in section
    rows = [r for r in section.split("<tr>") if r.startswith(('<td class="">kill', '<td class="">stop'))]
    assert [r.count("<td") for r in rows] == [7, 7]
    assert ">7</td><td class=\"num\">3</td><td class=\"num\">5</td><td class=\"num\">252.000<" in rows[0]
    assert summary["lookup_p99_ms"] == PLANTED_LOOKUPS["lookup_p99_ms"]
