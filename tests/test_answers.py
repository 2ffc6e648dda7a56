"""The answers page: each seed question answered with the numbers of the runs behind it."""

from __future__ import annotations

import re

import pytest

from lab.model.parse import parse_lab
from reports.answers import QUESTIONS, Cell, answer, sections
from reports.detection import action_stats


def cell(run_id: str, settings: dict, overrides: dict, window: float | list[float] | None, failed: int,
         detection: float | None, *, queries: int = 3000, qps_s: float = 10.0, p50: float = 1.5,
         experiment: str = "kill-one", rs2_answers: int = 500, lookups: dict | None = None) -> Cell:
    """A cell as the matrix gives it; `window` a list: one kill per window (a repeated fault)."""
    windows = [] if window is None else window if isinstance(window, list) else [window]
    faults = [{"action": "kill_resolver", "failover_window_ms": w, "failed": failed,
               "detection_ms": detection, "resolver": "rs2"} for w in windows]
    summary = {"queries": queries, "dropped": failed, "max_stall_ms": max(windows, default=0) + 7.0,
               "duration_s": qps_s, "latency_ms": {"p50": p50, "p99": p50 * 4}, "faults": faults,
               "fault_stats": action_stats(faults), "answers_by_resolver": {"rs1": 1000, "rs2": rs2_answers},
               **(lookups or {})}
    return Cell(run_id, experiment, settings, overrides, summary, f"runs/{run_id}/report.html")


@pytest.fixture
def lab(raw_lab):
    return parse_lab(raw_lab)


@pytest.fixture
def cells():
    return [
        cell("a", {"sysctl.net.ipv4.vs.expire_nodest_conn": 0},
             {"sysctl": {"net.ipv4.vs.expire_nodest_conn": 0}}, 9100.0, 910, None),
        cell("b", {"sysctl.net.ipv4.vs.expire_nodest_conn": 1},
             {"sysctl": {"net.ipv4.vs.expire_nodest_conn": 1}}, 1234.0, 123, 1180.0),
        cell("c", {"check.type": "MISC_CHECK", "check.delay_loop": 6},
             {"check": {"type": "MISC_CHECK", "misc_tool": "nslookup", "delay_loop": 6}},
             6400.0, 640, 6350.0),
        cell("d", {"network.keepalived_netns": "lb"}, {"network": {"keepalived_netns": "lb"}},
             1300.0, 130, 1250.0),
        cell("e", {"network.vlan": False}, {"network": {"vlan": False}}, None, 0, None,
             queries=40000, p50=0.9, experiment="baseline"),
    ]


PROBE = {"kernel": "6.1.0-99-amd64", "summary": {
    "total_in_init": 27,
    "init": {"exist": 27, "writable": 27, "leaking": []},
    "child_init_userns": {"exist": 27, "writable": 27, "leaking": []},
    "child_unpriv_userns": {"exist": 27, "writable": 0, "leaking": []}}}


def test_reference_burp_is_the_default_kill_cell(lab, cells):
    items = answer(cells, PROBE, lab).items
    # lab.toml has expire_nodest_conn = 1, so cell b is the lab's own configuration
    assert items["burp"]["ref"]["cell"].run_id == "b"
    assert items["burp"]["ref"]["window"] == 1234.0


def test_settings_ranked_best_first_and_recommended_config_rendered(lab, cells):
    result = answer(cells, PROBE, lab)
    assert [r["cell"].run_id for r in result.items["settings"]["rows"]] == ["b", "d", "c", "a"]
    assert result.recommended.run_id == "b"
    keepalived = result.files["/etc/keepalived/keepalived.conf"]
    assert "virtual_server 192.168.100.100 53" in keepalived
    assert "net.ipv4.vs.expire_nodest_conn = 1" in result.files["/etc/sysctl.d/90-dnslab-ipvs.conf"]


def test_recommended_config_carries_the_best_cells_overrides(lab, cells):
    cells[2] = cell("c", {"check.type": "MISC_CHECK"}, {"check": {"type": "MISC_CHECK",
                    "misc_tool": "nslookup"}}, 10.0, 1, 900.0)
    result = answer(cells, PROBE, lab)
    assert result.recommended.run_id == "c"
    assert "MISC_CHECK" in result.files["/etc/keepalived/keepalived.conf"]
    assert "nslookup" in result.files["/etc/keepalived/keepalived.conf"]


def test_every_question_is_present_with_its_run_numbers(lab, cells):
    page = {s.title: s.html for s in sections(answer(cells, PROBE, lab))}
    assert list(page)[:len(QUESTIONS)] == list(QUESTIONS.values())
    assert "1234 ms" in page[QUESTIONS["burp"]] and "runs/b/report.html" in page[QUESTIONS["burp"]]
    assert "9100" in page[QUESTIONS["settings"]]
    assert "6350" in page[QUESTIONS["check"]]
    assert "6.1.0-99-amd64" in page[QUESTIONS["sysctl"]]
    assert re.search(r"child netns, unprivileged user namespace</td><td class=\"num\">27</td>"
                     r"<td class=\"num\">0</td>", page[QUESTIONS["sysctl"]])
    assert "runs/d/report.html" in page[QUESTIONS["netns"]]
    assert "4000" in page[QUESTIONS["vlan"]]  # 40000 queries over 10 s
    assert "<details>" in page["Recommended configuration"]


def test_unmeasured_questions_say_how_to_measure_them(lab):
    page = {s.title: s.html for s in sections(answer([], None, lab))}
    for key in QUESTIONS:
        assert "Not measured in this suite" in page[QUESTIONS[key]]
    assert "No run with a fault" in page["Recommended configuration"]


def test_a_short_suite_still_answers_each_question_with_the_labs_own_numbers(lab, cells):
    page = {s.title: s.html for s in sections(answer(cells[:2], PROBE, lab))}
    for key in ("check", "netns", "vlan"):
        assert "runs/b/report.html" in page[QUESTIONS[key]], key
        assert "Only the lab's own setting" in page[QUESTIONS[key]], key
    assert "1180" in page[QUESTIONS["check"]]
    assert "check.type = DNS_CHECK" in page[QUESTIONS["check"]]
    assert "vlan = true (eth0.53)" in page[QUESTIONS["vlan"]]


def test_a_fault_no_client_traffic_reached_is_left_out_of_the_ranking(lab, cells):
    lucky = cell("z", {"load.socket_mode": "reuse"}, {"load": {"socket_mode": "reuse"}}, 0.0, 0, 900.0,
                 rs2_answers=0)
    result = answer([*cells, lucky], PROBE, lab)
    assert result.recommended.run_id == "b"
    assert "z" not in [r["cell"].run_id for r in result.items["settings"]["rows"]]
    page = {s.title: s.html for s in sections(result)}
    assert "no client traffic reached the faulted resolver" in page[QUESTIONS["settings"]]
    assert "runs/z/report.html" in page[QUESTIONS["settings"]]


def test_cells_sharing_one_run_are_ranked_once_but_compared_everywhere(lab, cells):
    shared = cell("b", {"network.keepalived_netns": "root"}, {"network": {"keepalived_netns": "root"}},
                  1234.0, 123, 1180.0)
    result = answer([*cells, shared], PROBE, lab)
    assert [r["cell"].run_id for r in result.items["settings"]["rows"]] == ["b", "d", "c", "a"]
    assert [r["cell"].run_id for r in result.items["netns"]["rows"]] == ["d", "b"]


def test_vlan_cost_and_keepalived_netns_are_stated_as_answers(lab, cells):
    on = cell("v", {"network.vlan": True}, {"network": {"vlan": True}}, None, 0, None,
              queries=36000, p50=1.2, experiment="baseline")
    result = answer([*cells, on], PROBE, lab)
    cost = result.items["vlan"]["cost"]
    assert cost["qps_pct"] == pytest.approx(-10.0) and cost["p50_ms"] == pytest.approx(0.3)
    page = {s.title: s.html for s in sections(result)}
    assert "<b>3600</b> queries/s against <b>4000</b>" in page[QUESTIONS["vlan"]]
    assert "<b>-10.0 %</b>" in page[QUESTIONS["vlan"]] and cost["noise"]
    assert "within the run-to-run variation" in page[QUESTIONS["vlan"]]
    assert page[QUESTIONS["netns"]].count("No. With Keepalived and the VIP in their own namespace") == 1
    assert "<b>1250 ms</b>" in page[QUESTIONS["netns"]]
    assert answer(cells, PROBE, lab).items["vlan"]["cost"] is None  # only vlan = false measured


def test_the_check_answer_states_the_measured_cost_of_nslookup(lab, cells):
    from chaos.check_cost import summarize

    samples = [{"resolver": "rs1", "wall_ms": w, "cpu_ms": c, "exit": 0} for w, c in ((320, 330), (320, 310))]
    raw = {"misc": {"nslookup": samples}, "live_resolvers": ["rs1"],
           "in_process": [{"resolver": "rs1", "wall_ms": 1.0, "cpu_ms": 0.5, "ok": True}],
           "keepalived": {"measured": True, "blocks": {"DNS_CHECK": {"blocks": 6, "checks_per_s": 12.0}},
                          "window_s": 10.0, "tick_ms": 10.0, "self_ticks": 24, "children_ticks": 0,
                          "run_ms": 240.0}}  # 240 ms over 120 checks: 2 ms per DNS_CHECK
    cost = {"summary": summarize(raw, 0.5, 3, 2), "href": "runs/p/probe_check_cost.json", "run_id": "p"}
    page = {s.title: s.html for s in sections(answer(cells, PROBE, lab, cost))}
    text = page[QUESTIONS["check"]]
    assert "Yes: per check, nslookup costs <b>160×</b> the CPU of a DNS_CHECK" in text
    assert "runs/p/probe_check_cost.json" in text and "A MISC_CHECK with nslookup costs 320 ms" in text
    assert "6350" in text  # the cells' detection table is still there


def test_headlines_give_one_line_per_answered_question(lab, cells):
    from reports.answers import headlines

    lines = headlines(answer(cells, PROBE, lab))
    assert lines[0].startswith("burp: kill-one [expire_nodest_conn=1]: failover window 1234 ms, 123 queries")
    assert lines[1].startswith("settings: recommended kill-one [expire_nodest_conn=1] (1234 ms, 123 failed); "
                               "worst")
    assert any(line.startswith("sysctls:") and "child netns, unprivileged user namespace 27/0/0" in line
               for line in lines)
    assert any("works in its own namespace" in line and "1250 ms" in line for line in lines)
    assert headlines(answer([], None, lab)) == []


def test_each_change_from_lab_toml_is_shown_against_the_labs_own_run(lab, cells):
    result = answer(cells, PROBE, lab)
    effects = result.items["settings"]["effects"]
    # a (expire_nodest_conn 1 -> 0), c (DNS_CHECK -> MISC_CHECK, delay_loop 0.5 -> 6), d (root -> lb)
    assert [e["row"]["cell"].run_id for e in effects] == ["a", "c", "d"]
    assert effects[0]["changes"] == ["expire_nodest_conn 1 → 0"]
    assert effects[0]["window_delta"] == pytest.approx(9100.0 - 1234.0) and effects[0]["failed_delta"] == 787
    assert effects[1]["changes"] == ["type DNS_CHECK → MISC_CHECK", "delay_loop 0.5 → 6",
                                     "misc_tool dig → nslookup"]
    page = {s.title: s.html for s in sections(result)}[QUESTIONS["settings"]]
    assert "<td>expire_nodest_conn 1 → 0</td>" in page and "+7866" in page and "+787" in page


def test_a_run_better_by_less_than_one_check_cycle_does_not_replace_lab_toml(lab, cells):
    # lab.toml: delay_loop 0.5 + retry 1 x delay_before_retry 0.5 = one check cycle of 1000 ms
    near = cell("n", {"ipvs.lb_algo": "wrr"}, {"ipvs": {"lb_algo": "wrr"}}, 434.0, 40, 400.0)
    result = answer([*cells, near], PROBE, lab)
    assert result.items["settings"]["best"]["cell"].run_id == "n"
    assert result.recommended.run_id == "b" and result.items["settings"]["margin_ms"] == 1000.0
    effect = next(e for e in result.items["settings"]["effects"] if e["row"]["cell"].run_id == "n")
    assert effect["noise"] and effect["window_delta"] == -800.0
    page = {s.title: s.html for s in sections(result)}[QUESTIONS["settings"]]
    assert "show no measurable difference" in page and "<td>no measurable difference</td>" in page
    far = cell("f", {"ipvs.lb_algo": "wrr"}, {"ipvs": {"lb_algo": "wrr"}}, 233.0, 20, 200.0)
    assert answer([*cells, far], PROBE, lab).recommended.run_id == "f"  # 1001 ms better


def test_a_vlan_difference_beyond_run_to_run_variation_is_called_so(lab, cells):
    slow = cell("s", {"network.vlan": True}, {"network": {"vlan": True}}, None, 0, None,
                queries=20000, experiment="baseline")  # 2000 q/s against 4000: -50 %
    result = answer([*cells, slow], PROBE, lab)
    assert not result.items["vlan"]["cost"]["noise"]
    page = {s.title: s.html for s in sections(result)}[QUESTIONS["vlan"]]
    assert "more than the run-to-run variation" in page


def removal(window: float, failed: int, detection: float) -> Cell:
    return cell("x", {"check.removal_on_exit": True}, {"check": {"removal_on_exit": True}}, window, failed,
                detection)


def test_the_burp_answer_says_what_removal_on_exit_did(lab, cells):
    result = answer([*cells, removal(48.0, 3, 41.0)], PROBE, lab)
    exit_ = result.items["burp"]["exit"]
    assert exit_["row"]["cell"].run_id == "x" and exit_["ref"]["cell"].run_id == "b"
    assert exit_["window_delta"] == pytest.approx(48.0 - 1234.0) and exit_["failed_delta"] == 3 - 123
    assert exit_["beyond"]  # 1186 ms shorter: more than one check cycle (1000 ms)
    page = {s.title: s.html for s in sections(result)}[QUESTIONS["burp"]]
    assert "With <b>removal on exit</b>" in page and "<b>48 ms</b>" in page
    assert "-1186 ms and -120 failed" in page
    assert "removal on exit takes it away" in page
    assert answer(cells, PROBE, lab).items["burp"]["exit"] is None  # not measured


def test_removal_on_exit_winning_beyond_a_check_cycle_is_recommended_with_every_file(lab, cells):
    result = answer([*cells, removal(48.0, 3, 41.0)], PROBE, lab)
    assert result.recommended.run_id == "x"
    files = result.files
    assert "FILE_CHECK {" in files["/etc/keepalived/keepalived.conf"]
    assert 'track_file dnslab_exit_rs1 {\n    file "/run/dnslab/exit/rs1.down"' in files[
        "/etc/keepalived/keepalived.conf"]
    dropin = files["/etc/systemd/system/dnslab-resolver@.service.d/removal-on-exit.conf"]
    assert "ExecStartPost=" in dropin and "ExecStopPost=" in dropin
    assert "os.pidfd_open" in files["/usr/local/sbin/dnslab-exit-watch"]
    assert "mkdir -p /run/dnslab/exit" in files["/etc/systemd/system/dnslab-keepalived.service"]
    page = {s.title: s.html for s in sections(result)}["Recommended configuration"]
    assert "removal-on-exit.conf" in page and "the unit drop-in, the exit watcher" in page
    # lab.toml's own recommendation carries no drop-in
    assert not any("removal-on-exit" in p for p in answer(cells, PROBE, lab).files)


def test_removal_on_exit_within_one_check_cycle_keeps_lab_toml(lab, cells):
    cells[1] = cell("b", {"sysctl.net.ipv4.vs.expire_nodest_conn": 1},
                    {"sysctl": {"net.ipv4.vs.expire_nodest_conn": 1}}, 1020.0, 95, 1030.0)
    result = answer([*cells, removal(60.0, 4, 50.0)], PROBE, lab)
    assert result.recommended.run_id == "b" and not result.items["burp"]["exit"]["beyond"]
    page = {s.title: s.html for s in sections(result)}[QUESTIONS["burp"]]
    assert "within one check cycle (1000 ms)" in page and "fab matrix --suite exit" in page


def test_with_repeated_faults_only_separated_intervals_count(lab, cells):
    """n = 5 per cell: a median 900 ms shorter is no measurable difference while the 95 % intervals
    overlap, and a shorter burp once they separate; the page shows n, the range and the interval."""
    cells[1] = cell("b", cells[1].settings, cells[1].overrides, [400.0, 1300.0, 1200.0, 1900.0, 1250.0], 123,
                    1180.0)
    wide = cell("w", {"ipvs.lb_algo": "wrr"}, {"ipvs": {"lb_algo": "wrr"}},
                [300.0, 350.0, 1500.0, 200.0, 320.0], 30, 300.0)
    result = answer([*cells, wide], PROBE, lab)
    effect = next(e for e in result.items["settings"]["effects"] if e["row"]["cell"].run_id == "w")
    assert effect["verdict"] == "no measurable difference" and result.recommended.run_id == "b"
    tight = cell("t", {"check.removal_on_exit": True}, {"check": {"removal_on_exit": True}},
                 [30.0, 25.0, 40.0, 35.0, 20.0], 2, 60.0)
    result = answer([*cells, tight], PROBE, lab)
    assert result.recommended.run_id == "t"
    assert result.items["burp"]["exit"]["beyond"]
    page = {s.title: s.html for s in sections(result)}
    assert "n=5, CI 20–40" in page[QUESTIONS["settings"]]
    assert "The intervals separate" in page[QUESTIONS["burp"]]


def test_the_seed_claim_is_answered_per_client_model(lab, cells):
    """Per client model: the raw reference fails lookups (the claim does not hold), glibc with 5 s
    retries loses none but stalls (it holds), musl neither fails nor stalls."""
    raw = {"lookups": 9000, "lookups_failed": 123, "lookup_p99_ms": 60.0, "lookup_max_ms": 100.0}
    cells[1] = cell("b", cells[1].settings, cells[1].overrides, [1234.0] * 3, 123, 1180.0, lookups=raw)
    glibc = cell("g", {"load.client": "glibc"},
                 {"load": {"client": "glibc", "timeout_ms": 5000, "attempts": 2}}, [0.0] * 3, 0, 1100.0,
                 lookups={"lookups": 9000, "lookups_failed": 0, "lookup_p99_ms": 5003.0,
                          "lookup_max_ms": 5020.0})
    musl = cell("m", {"load.client": "musl"}, {"load": {"client": "musl", "timeout_ms": 5000, "attempts": 2}},
                [0.0] * 3, 0, 1100.0,
                lookups={"lookups": 9000, "lookups_failed": 0, "lookup_p99_ms": 30.0, "lookup_max_ms": 900.0})
    result = answer([*cells, glibc, musl], PROBE, lab)
    assert not {"g", "m"} & {r["cell"].run_id for r in result.items["settings"]["rows"]}  # not settings
    rows = result.items["lookups"]["rows"]
    assert [(r["client"], r["claim"]) for r in rows] == [
        ("raw (one query, 100 ms timeout)", False), ("glibc timeout:5 attempts:2", True),
        ("musl (all nameservers at once, 5000 ms per lookup)", False)]
    page = {s.title: s.html
            for s in sections(answer([*cells, glibc, musl], PROBE, lab))}[QUESTIONS["lookups"]]
    assert "does not hold — 123 of 9000 lookups failed" in page
    assert "holds — no lookup failed, the longest took 5020 ms" in page
