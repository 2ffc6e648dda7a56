"""Detection per protocol, from Keepalived's word, returns and per-action statistics, on synthetic runs
with known truth (tests/synthetic_exit.py)."""

from __future__ import annotations

import pytest

from reports.analysis import analyse
from reports.load import load_run
from reports.stats import spread
from tests.synthetic_exit import EXIT_TRUTH, write_exit_run


@pytest.fixture(scope="module")
def exit_run(tmp_path_factory):
    run = load_run(write_exit_run(tmp_path_factory.mktemp("runs") / "exit"))
    return run, analyse(run.queries, run.events, run.ipvs, run.meta)


def test_every_fault_by_the_samples_and_by_keepalived_s_word(exit_run):
    _, a = exit_run
    assert a.load_proto == "udp" and a.sample_interval_ms == 50.0
    got = [(f.target, f.failover_window_ms, f.failed, f.detection_ms, f.detection_by_proto,
            f.notify_detection_ms, f.notify_detection_by_proto) for f in a.faults]
    assert got == EXIT_TRUTH["faults"]


def test_keepalived_s_word_comes_within_one_sample_of_the_samples(exit_run):
    _, a = exit_run
    for f in a.faults:
        if f.detection_ms is not None and f.notify_detection_ms is not None:
            assert 0 <= f.detection_ms - f.notify_detection_ms <= a.sample_interval_ms


def test_returns_readd_first_answer_and_failures(exit_run):
    _, a = exit_run
    got = [(r.target, r.readded_ms, r.notify_up_ms, r.first_answer_ms, r.failed, r.window_ms)
           for r in a.returns]
    assert got == EXIT_TRUTH["returns"]
    # all down, then rs1 back: the first answer comes once Keepalived has put it back in IPVS
    all_down_return = a.returns[1]
    assert all_down_return.first_answer_ms == all_down_return.readded_ms + 1.0


def test_per_action_statistics(exit_run):
    _, a = exit_run
    stats = a.summary()["fault_stats"]
    assert list(stats) == ["kill_resolver"]
    kill = stats["kill_resolver"]
    for key, truth in EXIT_TRUTH["kill_stats"].items():
        got = kill[key]
        assert ({k: got[k] for k in truth} if isinstance(truth, dict) else got) == truth, key
    # four windows (8, 18, 18, 978 ms): the median's interval lies within them; two detections: none
    low, high = kill["failover_window_ms"]["ci"]
    assert 8.0 <= low <= 18.0 <= high <= 978.0
    assert kill["detection_ms"] == {"n": 2, "median": 40.0, "min": 30.0, "max": 50.0, "ci": None}
    assert spread([None, None]) == {"n": 0, "median": None, "min": None, "max": None, "ci": None}


def test_the_median_interval_is_the_bootstrap_percentiles_and_repeatable():
    from reports.stats import median_ci, separated, verdict

    assert median_ci([5.0, 5.0]) is None  # fewer than 3: no interval
    assert median_ci([7.0] * 5) == (7.0, 7.0)
    values = [10.0, 12.0, 11.0, 13.0, 9.0, 50.0]
    assert median_ci(values) == median_ci(values)
    low, high = median_ci(values)
    assert 9.0 <= low <= 11.5 <= high <= 50.0
    near, far = spread([10, 12, 11, 13, 9]), spread([11, 14, 12, 10, 13])
    assert not separated(near, far) and verdict(near, far) == "no measurable difference"
    low_ = spread([20, 25, 30, 35, 22])
    assert separated(near, low_) and verdict(near, low_) == "better" and verdict(low_, near) == "worse"


def test_empty_services_read_as_every_server_gone(exit_run):
    run, _ = exit_run
    empty = run.ipvs[run.ipvs["real_server"] == ""]
    assert set(empty["proto"]) == {"udp", "tcp"} and (empty["weight"] == 0).all()
    assert empty["t_ns"].min() - run.events["t_ns"].min() == 2_050_000_000  # from the 3050 ms sample


def test_a_tcp_only_load_is_detected_on_the_tcp_service(tmp_path):
    run = load_run(write_exit_run(tmp_path / "tcp", tcp_only=True))
    a = analyse(run.queries, run.events, run.ipvs, run.meta)
    assert a.load_proto == "tcp"
    assert (a.faults[0].detection_ms, a.faults[0].notify_detection_ms) == EXIT_TRUTH["tcp_only_first_fault"]


def test_summary_carries_the_new_keys(exit_run):
    _, a = exit_run
    s = a.summary()
    fault = s["faults"][0]
    assert fault["detection_by_proto"] == {"udp": 50.0, "tcp": 100.0}
    assert fault["notify_detection_ms"] == 30.0
    assert s["returns"][1]["first_answer_ms"] == 301.0
    assert s["load_proto"] == "udp" and s["ipvs_sample_interval_ms"] == 50.0


def test_a_server_taken_out_again_after_its_return_is_a_flap(tmp_path):
    import json

    from bench.synthetic import MS, SERVERS, T0_NS, VIP

    run_dir = write_exit_run(tmp_path / "flap")
    extra = [{"t_ns": T0_NS + t * MS, "kind": "detect", "action": action, "target": "rs2",
              "detail": {"real_server": SERVERS["rs2"], "proto": "udp", "vip": VIP}}
             for t, action in ((2600, "rs_down"), (2700, "rs_up"), (2800, "rs_down"))]
    with (run_dir / "events.jsonl").open("a") as f:
        f.writelines(json.dumps(e) + "\n" for e in extra)
    run = load_run(run_dir)
    a = analyse(run.queries, run.events, run.ipvs, run.meta)
    assert [r.flaps for r in a.returns] == [2, 0, 0, 0]
    assert a.summary()["returns"][0]["flaps"] == 2


def test_clean_returns_have_no_flaps(exit_run):
    _, a = exit_run
    assert [r.flaps for r in a.returns] == [0, 0, 0, 0]


def test_the_faulted_resolvers_share_of_the_traffic_before_the_fault(exit_run):
    _, a = exit_run
    # the second before the first kill: queries 0..499, rs2 answered every third (i % 3 == 1)
    assert a.faults[0].share_before == pytest.approx(167 / 500)
    # before rs1's kill at 3000 ms, rs2 had been out until 2450 ms and its share went to rs1
    assert a.faults[1].share_before == pytest.approx(241 / 500)  # 166 of its own + 75 of rs2's
    assert a.summary()["faults"][0]["share_before"] == a.faults[0].share_before
