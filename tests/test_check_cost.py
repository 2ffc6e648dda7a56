"""The health-check cost probe: the pure summary on known numbers, the conf parser on rendered configs,
and the guest script run standalone (system python3, stdlib only) against a real Unbound on loopback
and a dead address, and its CPU window on real processes of known cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from chaos import check_cost
from lab.model.parse import load_lab, with_overrides
from lab.render.files import render_keepalived
from reports.check_cost import sentences

LIVE, DEAD = "127.0.0.61", "127.0.0.62"  # Unbound on LIVE:53; nothing listens on DEAD
LOOPBACK_NET = {"subnet": "127.0.0.0/24", "vip": "127.0.0.100", "director": "127.0.0.254",
                "client": "127.0.0.200"}


def _samples(cpu: list[float], wall: list[float], exits: list[int]) -> list[dict]:
    return [{"resolver": "rs1", "cpu_ms": c, "wall_ms": w, "exit": e}
            for c, w, e in zip(cpu, wall, exits, strict=True)]


def _raw(keepalived: dict) -> dict:
    return {
        "live_resolvers": ["rs1"],
        "misc": {"nslookup": _samples([10.0, 20.0, 30.0], [100.0, 200.0, 400.0], [0, 0, 1]),
                 "dig": _samples([5.0, 5.0, 5.0, 15.0], [50.0, 50.0, 50.0, 50.0], [0, 0, 0, 0])},
        "in_process": [{"resolver": "rs1", "cpu_ms": 0.2, "wall_ms": 1.0, "ok": True},
                       {"resolver": "rs1", "cpu_ms": 0.4, "wall_ms": 3.0, "ok": True},
                       {"resolver": "rs9", "cpu_ms": 9.0, "wall_ms": 1000.0, "ok": False}],
        "keepalived": keepalived,
    }


def _window(run_ms: float, self_ticks: int, blocks: dict | None = None, children_ticks: int = 0) -> dict:
    return {"measured": True, "blocks": blocks or {"DNS_CHECK": {"blocks": 6, "checks_per_s": 12.0}},
            "window_s": 10.0, "tick_ms": 10.0, "self_ticks": self_ticks, "children_ticks": children_ticks,
            "run_ms": run_ms}


def test_percentile_interpolates_between_ranks():
    assert check_cost.percentile([4.0, 1.0, 10.0, 3.0, 2.0], 50) == 3.0
    assert check_cost.percentile([1.0, 2.0, 3.0, 4.0, 10.0], 90) == pytest.approx(7.6)
    assert check_cost.percentile([7.0], 90) == 7.0
    assert check_cost.percentile([], 50) is None


def test_core_share_counts_every_check_of_a_round():
    # 20 ms per check, 3 resolvers x 2 virtual servers every 0.5 s: 240 ms of CPU per second
    assert check_cost.core_share(20.0, 0.5, 6) == pytest.approx(0.24)
    assert check_cost.core_share(None, 0.5, 6) is None


def test_summary_per_kind_shares_and_ratios():
    s = check_cost.summarize(_raw(_window(run_ms=60.0, self_ticks=5)), delay_loop=0.5, resolvers=3,
                             virtual_servers=2)
    assert s["scenarios"]["lab"] == {"delay_loop": 0.5, "resolvers": 3, "virtual_servers": 2}
    assert s["scenarios"]["6s"] == {"delay_loop": 6.0, "resolvers": 3, "virtual_servers": 2}
    ns = s["kinds"]["nslookup"]
    assert (ns["n"], ns["cpu_ms"], ns["wall_ms"]) == (3, 20.0, 200.0)
    assert ns["cpu_ms_p90"] == pytest.approx(28.0) and ns["wall_ms_p90"] == pytest.approx(360.0)
    assert ns["success"] == pytest.approx(2 / 3)
    assert ns["core_share"] == pytest.approx({"lab": 0.24, "1s": 0.12, "6s": 0.02})
    assert s["kinds"]["dig"]["cpu_ms"] == 5.0 and s["kinds"]["dig"]["success"] == 1.0
    base = s["kinds"]["in_process_query"]  # the dead resolver's sample is not part of the floor
    assert base["n"] == 2 and base["cpu_ms"] == pytest.approx(0.3) and base["success"] == 1.0
    dns = s["kinds"]["dns_check"]
    assert dns["measured"] and dns["checks"] == 120.0 and dns["cpu_source"] == "schedstat"
    assert dns["cpu_ms"] == pytest.approx(0.5) and dns["cpu_ms_ticks"] == pytest.approx(50 / 120)
    assert dns["core_share"] == pytest.approx({"lab": 0.006, "1s": 0.003, "6s": 0.0005})
    assert s["cpu_ratios"] == pytest.approx({
        "nslookup/dns_check": 40.0, "nslookup/in_process_query": 20 / 0.3,
        "dig/dns_check": 10.0, "dig/in_process_query": 5 / 0.3})


def test_sentences_say_the_answer_with_its_numbers():
    s = check_cost.summarize(_raw(_window(run_ms=60.0, self_ticks=5)), 0.5, 3, 2)
    assert sentences(s) == [
        "A MISC_CHECK with nslookup costs 20 ms of CPU and 200 ms wall per check (median of 3, 67 % passed); "
        "of one core: 24 % at delay_loop 0.5 s, 12 % at 1 s, 2 % at 6 s (3 resolvers x 2 virtual servers).",
        "A MISC_CHECK with dig costs 5 ms of CPU and 50 ms wall per check (median of 4, 100 % passed); "
        "of one core: 6 % at delay_loop 0.5 s, 3 % at 1 s, 0.5 % at 6 s (3 resolvers x 2 virtual servers).",
        "DNS_CHECK costs 0.5 ms of Keepalived's CPU per check (in-process, no fork/exec; 120 checks in "
        "10 s); of one core: 0.6 % at delay_loop 0.5 s, 0.3 % at 1 s, 0.05 % at 6 s "
        "(3 resolvers x 2 virtual servers).",
        "CPU per check: nslookup/dns_check 40x, nslookup/in_process_query 67x, dig/dns_check 10x, "
        "dig/in_process_query 17x (a bare in-process query: 0.3 ms CPU, 2 ms wall).",
    ]
    bound = sentences(check_cost.summarize(_raw(_window(0.0, 0)), 0.5, 2, 2))
    assert "(2 resolvers x 2 virtual servers), 12 % at 1 s (3 resolvers x 2 virtual servers)" in bound[0]
    assert bound[2] == ("DNS_CHECK costs under 0.0833 ms of Keepalived's CPU per check "
                        "(no clock tick in 10 s).")
    assert bound[3].startswith("CPU per check: nslookup/dns_check >= 240x, nslookup/in_process_query 67x")


def test_zero_ticks_give_an_upper_bound_not_a_zero():
    s = check_cost.summarize(_raw(_window(run_ms=0.0, self_ticks=0)), 0.5, 3, 2)
    dns = s["kinds"]["dns_check"]
    assert dns["cpu_ms"] is None and dns["cpu_ms_per_check_max"] == pytest.approx(10 / 120)
    assert "core_share" not in dns and dns["core_share_max"]["lab"] == pytest.approx(10 / 120 * 6 / 500)
    assert s["cpu_ratios"]["nslookup/dns_check_min"] == pytest.approx(240.0)
    assert "nslookup/dns_check" not in s["cpu_ratios"]


def test_ticks_stand_in_when_schedstat_is_missing():
    dns = check_cost.dns_check_cost(_window(run_ms=0.0, self_ticks=3))
    assert dns["cpu_source"] == "ticks" and dns["cpu_ms"] == pytest.approx(30 / 120)


def test_dns_check_not_measured_when_another_check_is_deployed():
    misc = _window(60.0, 5, {"MISC_CHECK": {"blocks": 6, "checks_per_s": 6.0}}, children_ticks=300)
    s = check_cost.summarize(_raw(misc), 1.0, 3, 2)
    assert s["kinds"]["dns_check"]["measured"] is False
    assert "MISC_CHECK" in s["kinds"]["dns_check"]["reason"]
    deployed = s["deployed"]  # the MISC_CHECK Keepalived runs: its fork, and its children's CPU
    assert deployed["type"] == "MISC_CHECK" and deployed["checks"] == 60.0
    assert deployed["cpu_ms"] == pytest.approx(1.0) and deployed["children_cpu_ms"] == pytest.approx(50.0)
    assert s["cpu_ratios"]["nslookup/dns_check"] is None
    assert s["cpu_ratios"]["nslookup/in_process_query"] == pytest.approx(20 / 0.3)
    unread = check_cost.summarize(_raw({"measured": False, "reason": "no pid file"}), 1.0, 3, 2)
    assert unread["kinds"]["dns_check"] == {"measured": False, "reason": "no pid file"}
    mixed = _window(60.0, 5, {"MISC_CHECK": {"blocks": 3, "checks_per_s": 3.0},
                              "DNS_CHECK": {"blocks": 3, "checks_per_s": 3.0}})
    assert check_cost.summarize(_raw(mixed), 1.0, 3, 2)["kinds"]["dns_check"]["measured"] is False


def test_check_blocks_of_rendered_configs():
    lab = load_lab()
    dns = with_overrides(lab, {"check": {"type": "DNS_CHECK", "delay_loop": 0.5}})
    blocks = check_cost.check_blocks(render_keepalived(dns))
    assert blocks == {"DNS_CHECK": {"blocks": 6, "checks_per_s": 12.0}}
    misc = with_overrides(lab, {"check": {"type": "MISC_CHECK", "delay_loop": 2},
                                "ipvs": {"protocols": ["udp"]}})
    blocks = check_cost.check_blocks(render_keepalived(misc))
    assert blocks == {"MISC_CHECK": {"blocks": 3, "checks_per_s": 1.5}}


def test_probe_spec_holds_keepalived_exact_commands():
    lab = with_overrides(load_lab(), {"check": {"type": "DNS_CHECK", "connect_timeout": 0.7}})
    spec = check_cost.probe_spec(lab, 5, 3.0)
    assert spec["misc"]["nslookup"]["rs2"] == ["/usr/bin/timeout", "0.7", "/usr/bin/nslookup", "-timeout=1",
                                               "-retry=0", "-type=TXT", "who.lab.test", "192.168.100.12"]
    assert spec["misc"]["dig"]["rs1"][:3] == ["/usr/bin/timeout", "0.7", "/usr/bin/dig"]
    assert spec["resolvers"] == {"rs1": "192.168.100.11", "rs2": "192.168.100.12", "rs3": "192.168.100.13"}
    assert (spec["n"], spec["window_s"]) == (5, 3.0)


def test_probe_refuses_bad_arguments_before_touching_the_guest():
    from chaos.actions import Target
    from lab.model.errors import LabError

    with pytest.raises(LabError, match="n must be >= 1"):
        check_cost.probe_check_cost(Target(conn=None, lab=load_lab()), n=0)


@pytest.fixture(scope="module")
def unbound(tmp_path_factory):
    """A lab-zone Unbound on LIVE:53 (port 53: the MISC commands name no other)."""
    from bench.loadtest import start_unbound

    proc = start_unbound(tmp_path_factory.mktemp("unbound"), LIVE, 53, name="live")
    yield proc
    proc.terminate()
    proc.wait(timeout=10)


def test_guest_script_measures_real_checks(unbound):
    """The script as the guest runs it (system python3, isolated: stdlib only) on a live and a dead
    resolver: the live one passes every check, the dead one gets no MISC commands."""
    lab = with_overrides(load_lab(), {"network": LOOPBACK_NET, "check": {"connect_timeout": 2},
                                      "resolvers": [{"name": "live", "address": LIVE},
                                                    {"name": "dead", "address": DEAD}]})
    spec = check_cost.probe_spec(lab, 3, 0)
    res = subprocess.run(["/usr/bin/python3", "-I", check_cost.__file__, json.dumps(spec)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    raw = json.loads(res.stdout)
    assert raw["live_resolvers"] == ["live"]
    assert raw["keepalived"] == {"measured": False, "reason": "window_s is 0"}
    s = check_cost.summarize(raw, 0.5, 2, 2)["kinds"]
    for tool in ("nslookup", "dig"):
        assert [x["resolver"] for x in raw["misc"][tool]] == ["live"] * 3
        assert s[tool]["success"] == 1.0
        assert s[tool]["cpu_ms"] >= 2.0  # the child's own CPU: loading the resolver libraries costs ms
        assert s[tool]["wall_ms"] * os.cpu_count() >= s[tool]["cpu_ms"]
    assert s["in_process_query"]["success"] == 1.0 and s["in_process_query"]["n"] == 3
    dead = [x for x in raw["in_process"] if x["resolver"] == "dead"]
    assert len(dead) == 3 and not any(x["ok"] for x in dead)


def test_in_process_query_wants_noerror(unbound):
    assert check_cost.in_process_query(LIVE)["ok"]
    assert not check_cost.in_process_query(LIVE, qname="example.com")["ok"]  # REFUSED
    assert not check_cost.in_process_query(DEAD)["ok"]


def test_misc_checks_fail_against_a_dead_resolver():
    lab = with_overrides(load_lab(), {"network": LOOPBACK_NET, "check": {"connect_timeout": 2},
                                      "resolvers": [{"name": "dead", "address": DEAD}]})
    for tool, cmds in check_cost.probe_spec(lab, 2, 0)["misc"].items():
        samples = check_cost.misc_samples(cmds, 2)
        assert check_cost.sample_stats(samples)["success"] == 0.0, (tool, samples)


BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def test_cpu_window_sees_a_reaped_child_as_children_time():
    """A parent that reaps a child burning 0.3 s of CPU, then sleeps: children ticks, not its own."""
    child = BUSY.format(s=0.3)
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time\ntime.sleep(0.3)\n"
                               f"subprocess.run([sys.executable, '-c', {child!r}])\ntime.sleep(30)"])
    try:
        time.sleep(0.15)
        window = check_cost.cpu_window(parent.pid, 1.5)
    finally:
        parent.kill()
        parent.wait()
    assert window["children_ticks"] * window["tick_ms"] >= 250
    assert window["self_ticks"] * window["tick_ms"] <= 100 and window["run_ms"] <= 100


def test_deployed_checks_measure_the_checker_process(tmp_path):
    """The checker pid file names a process burning 0.4 s of CPU inside the window: its run time and
    ticks show it, and the DNS_CHECK cost divides it over the rendered config's checks."""
    (tmp_path / "keepalived.conf").write_text(render_keepalived(load_lab()))
    busy = subprocess.Popen([sys.executable, "-c", "import time\ntime.sleep(0.3)\n" + BUSY.format(s=0.4)])
    try:
        (tmp_path / "pid").write_text(f"{busy.pid}\n")
        time.sleep(0.15)
        deployed = check_cost.deployed_checks(str(tmp_path / "keepalived.conf"), str(tmp_path / "pid"), 1.5)
    finally:
        busy.kill()
        busy.wait()
    assert deployed["measured"] and deployed["blocks"] == {"DNS_CHECK": {"blocks": 6, "checks_per_s": 12.0}}
    assert 380 <= deployed["run_ms"] <= 550
    assert abs(deployed["self_ticks"] * deployed["tick_ms"] - deployed["run_ms"]) <= 100
    dns = check_cost.dns_check_cost(deployed)
    assert dns["cpu_ms"] == pytest.approx(deployed["run_ms"] / dns["checks"])
    assert dns["checks"] == pytest.approx(12.0 * deployed["window_s"])


def test_unreadable_checker_is_reported_not_raised(tmp_path):
    out = check_cost.deployed_checks(str(tmp_path / "missing.conf"), str(tmp_path / "pid"), 0.1)
    assert out["measured"] is False and "missing.conf" in out["reason"]
