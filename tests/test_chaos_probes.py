"""Probes: the IPVS sampler (parsing and a real run at its rate), steady-state probes, sysctl probe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from chaos import ipvs_sampler, probes

IP_VS = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
UDP  C0A86464:0035 rr ops
  -> C0A8640B:0035      Masq    1      0          12
  -> C0A8640D:0035      Masq    0      3          0
TCP  C0A86464:0035 rr
  -> C0A8640B:0035      Masq    1      2          1
TCP  C0A86465:0035 rr
"""


def test_parse_proc_net_ip_vs():
    assert ipvs_sampler.parse(IP_VS) == [
        ("192.168.100.100:53", "udp", "192.168.100.11:53", 1, 0, 12),
        ("192.168.100.100:53", "udp", "192.168.100.13:53", 0, 3, 0),
        ("192.168.100.100:53", "tcp", "192.168.100.11:53", 1, 2, 1),
    ]


def test_sampler_writes_rows_at_its_rate_and_stops_on_sigterm(tmp_path: Path):
    source = tmp_path / "ip_vs"
    source.write_text(IP_VS)
    out = tmp_path / "ipvs.csv"
    proc = subprocess.Popen([sys.executable, ipvs_sampler.__file__, str(out), "--hz", "20",
                             "--source", str(source)])
    time.sleep(1.0)
    source.write_text(IP_VS.replace("  -> C0A8640D:0035      Masq    0      3          0\n", ""))
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    rows = pd.read_csv(out)
    assert list(rows.columns) == ["t_ns", "vip", "proto", "real_server", "weight", "active_conns",
                                  "inactive_conns"]
    samples = rows.groupby("t_ns").size()
    span_s = (samples.index.max() - samples.index.min()) / 1e9
    assert len(samples) / span_s >= 10, "at least 10 samples per second"
    rs13 = rows[rows.real_server == "192.168.100.13:53"]
    assert 0 < len(rs13) < len(samples), "the removed real server disappears from later samples"
    assert rs13.t_ns.max() < rows.t_ns.max()


def test_steady_state_probes_on_records():
    records = pd.DataFrame({
        "t_send_ns": [1, 2, 3, 4, 5],
        "latency_ms": [1.0, 2.0, None, 4.0, 100.0],
        "outcome": ["ok", "ok", "timeout", "ok", "ok"],
    })
    assert probes.success_ratio(records) == 0.8
    assert probes.latency_ms(records, percentile=50) == 3.0
    assert probes.query_count(probes.window(records, 2, 4)) == 2
    assert probes.success_ratio(records.iloc[0:0]) == 1.0


def test_sysctl_probe_sees_per_namespace_values():
    """Run in a throwaway netns (its "init" case), over sysctls the host kernel has: no write leaks."""
    from chaos import sysctl_probe

    res = subprocess.run(["unshare", "--net", sys.executable, sysctl_probe.__file__, "/proc/sys/net/ipv4",
                          "ip_default_ttl", "tcp_ecn"], capture_output=True, text=True, timeout=60)
    if res.returncode != 0 and "Operation not permitted" in res.stderr:
        pytest.skip("cannot create namespaces here")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    ttl = data["sysctls"]["ip_default_ttl"]
    for case in sysctl_probe.CASES:
        assert ttl[case]["exists"] and ttl[case]["writable"] and ttl[case]["write_took"]
        assert ttl[case]["leaks_to"] == []
    assert data["sysctls"]["tcp_ecn"]["init"]["leak_tested"] is False  # 2 -> 3 is out of range
    assert data["summary"]["init"]["exist"] == 2


def test_other_value_differs():
    from chaos.sysctl_probe import other_value

    assert other_value("0") == "1" and other_value("1") == "0" and other_value("1024") == "1025"
    assert other_value("3 50") == "4 50"


def test_a_service_with_no_real_server_gets_an_empty_row():
    rows = ipvs_sampler.parse(IP_VS, empty_services=True)
    assert rows[-1] == ("192.168.100.101:53", "tcp", "", 0, 0, 0)
    assert len(rows) == 4
    emptied = IP_VS.replace("  -> C0A8640B:0035      Masq    1      2          1\n", "")
    assert ("192.168.100.100:53", "tcp", "", 0, 0, 0) in ipvs_sampler.parse(emptied, empty_services=True)


# --- Keepalived's notify FIFO as detect events -------------------------------------------------------

NAMES = {"192.168.100.12:53": "rs2"}


def test_notify_lines_become_detect_events_and_quorum_notes():
    from chaos.notify_reader import parse_line

    assert parse_line("RS [192.168.100.12]:udp:53 [192.168.100.100]:udp:53 DOWN", NAMES) == {
        "kind": "detect", "action": "rs_down", "target": "rs2",
        "detail": {"real_server": "192.168.100.12:53", "proto": "udp", "vip": "192.168.100.100:53",
                   "source": "lvs_notify_fifo"}}
    up = parse_line("RS [192.168.100.13]:tcp:53 [192.168.100.100]:tcp:53 UP\n", NAMES)
    assert (up["action"], up["target"], up["detail"]["proto"]) == ("rs_up", "192.168.100.13:53", "tcp")
    quorum = parse_line("VS [192.168.100.100]:udp:53 DOWN", NAMES)
    assert (quorum["kind"], quorum["action"], quorum["detail"]["vip"]) == ("note", "vs_quorum_down",
                                                                             "192.168.100.100:53")
    assert parse_line("INSTANCE \"VI_1\" MASTER 100", NAMES) is None


def test_a_line_cut_between_two_reads_is_kept_for_the_next():
    from chaos.notify_reader import events

    first = b"RS [192.168.100.12]:udp:53 [192.168.100.100]:udp:53 DOWN\nRS [192.16"
    lines, rest = events(first, 7, b"", NAMES)
    assert len(lines) == 1 and json.loads(lines[0])["t_ns"] == 7 and rest == b"RS [192.16"
    lines, rest = events(b"8.100.12]:tcp:53 [192.168.100.100]:tcp:53 DOWN\n", 9, rest, NAMES)
    assert json.loads(lines[0])["detail"]["proto"] == "tcp" and rest == b""


def test_notify_reader_drops_old_lines_stamps_new_ones_and_stops_on_sigterm(tmp_path: Path):
    """A real FIFO held open read-write like Keepalived does: lines written before the reader started
    are dropped; later ones are stamped within a moment of being written; a writer closing and
    reopening the FIFO (a Keepalived reload) does not end the reading."""
    import os

    from chaos import notify_reader

    fifo, out = tmp_path / "lvs.fifo", tmp_path / "detect.jsonl"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    os.write(writer, b"RS [192.168.100.12]:udp:53 [192.168.100.100]:udp:53 UP\n")  # old news
    proc = subprocess.Popen([sys.executable, notify_reader.__file__, str(fifo), str(out),
                             "--name", "192.168.100.12:53=rs2"])
    try:
        time.sleep(1.5)  # started and drained
        sent = time.time_ns()
        os.write(writer, b"RS [192.168.100.12]:udp:53 [192.168.100.100]:udp:53 DOWN\n")
        os.close(writer)  # a reload: Keepalived closes the FIFO and opens it again
        writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        time.sleep(0.5)
        os.write(writer, b"VS [192.168.100.100]:udp:53 DOWN\n"
                         b"RS [192.168.100.12]:udp:53 [192.168.100.100]:udp")
        time.sleep(0.5)
        os.write(writer, b":53 UP\n")
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=5)
        os.close(writer)
    assert code == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["kind"], e["action"]) for e in got] == [("detect", "rs_down"), ("note", "vs_quorum_down"),
                                                       ("detect", "rs_up")]
    assert 0 <= got[0]["t_ns"] - sent < 300_000_000, "stamped when written"
    assert got[0]["target"] == "rs2"
    assert probes.read_detect_events(out) == got


def test_stop_all_stops_every_process_in_one_go_and_reports_one_that_had_to_be_killed(tmp_path):
    """Real processes on this host (invoke's local runner speaks Fabric's `run`): a polite one exits
    on TERM, a stubborn one ignores it and is SIGKILLed after its timeout, which stop_all reports."""
    import contextlib
    import os
    import subprocess
    import threading
    import time

    from invoke import Config, Context

    from chaos.probes import stop_all

    def local() -> Context:
        return Context(Config(overrides={"run": {"in_stream": False}}))

    procs = {}
    bodies = {"polite": "exec sleep 60", "stubborn": "trap '' TERM; while :; do sleep 0.1; done"}
    for name, body in bodies.items():
        pidfile = tmp_path / f"{name}.pid"
        procs[name] = subprocess.Popen(["bash", "-c", f"echo $$ > {pidfile}; {body}"], start_new_session=True)
        threading.Thread(target=procs[name].wait, daemon=True).start()  # reaped as the guest's init would
    deadline = time.monotonic() + 5
    while not all((tmp_path / f"{n}.pid").exists() for n in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stop_all(local(), [(str(tmp_path / "polite.pid"), "TERM", 5.0)])
    assert procs["polite"].wait(timeout=5) != 0
    start = time.monotonic()
    assert not stop_all(local(), [(str(tmp_path / "stubborn.pid"), "TERM", 0.5),
                                    (str(tmp_path / "missing.pid"), "TERM", 5.0)])
    assert procs["stubborn"].wait(timeout=5) == -9 and time.monotonic() - start < 4
    for proc in procs.values():  # nothing of the test left behind, children included
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)


def test_health_asks_every_resolver_and_names_each_failed_check(tmp_path, raw_lab, monkeypatch):
    """chaos/guest/health.sh on this machine, `ip netns exec` and `dig` stubbed: the answers, a check
    that fails by name (a name with spaces and quotes stays one), and no IPVS table here."""
    from invoke import Config, Context

    from chaos import probes
    from lab.model.parse import parse_lab
    from lab.ops import leftovers

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ip").write_text('#!/bin/sh\nshift 3\nexec "$@"\n')  # ip netns exec NS CMD... -> CMD...
    dig = '#!/bin/sh\ncase "$4" in @192.168.100.12) ;; *) echo "\\"rs${4##*.1}\\"";; esac\n'  # rs2 is silent
    (bindir / "dig").write_text(dig)
    for stub in bindir.iterdir():
        stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setattr(leftovers, "health_checks", lambda lab: [
        ("passes", "true"), ("it's \"broken\"; really", "exit 1"), ("a pipe", "echo x | grep -q x")])
    lab = parse_lab(raw_lab)
    state = probes.health(Context(Config(overrides={"run": {"in_stream": False}})), lab)
    assert state["resolvers"] == {"rs1": True, "rs2": False, "rs3": True}
    assert state["faults"] == ["it's \"broken\"; really"]
    assert not state["ok"] and "udp/192.168.100.11:53" in state["ipvs_missing"]


def test_estimator_sysctls_are_not_changed_where_a_change_restarts_the_kthreads(tmp_path):
    """A directory that has est_nice (kernel >= 6.2): est_nice and run_estimation are written with their
    own value, est_cpulist not at all, none leak-tested; the others as usual. Run in a throwaway netns
    over plain files, so every case sees the same files (they "leak" by construction)."""
    from chaos import sysctl_probe

    values = {"est_nice": "0", "run_estimation": "1", "est_cpulist": "0-1", "conntrack": "0"}
    for name, value in values.items():
        (tmp_path / name).write_text(value + "\n")
    res = subprocess.run(["unshare", "--net", sys.executable, sysctl_probe.__file__, str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0 and "Operation not permitted" in res.stderr:
        pytest.skip("cannot create namespaces here")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["summary"]["not_changed"] == ["est_cpulist", "est_nice", "run_estimation"]
    init = {name: data["sysctls"][name]["init"] for name in data["sysctls"]}
    assert init["est_nice"]["writable"] is True and init["est_nice"]["leak_tested"] is False
    assert init["est_cpulist"]["writable"] is None and "kthreads" in init["est_cpulist"]["not_changed"]
    assert init["conntrack"]["leak_tested"] is True and "not_changed" not in init["conntrack"]
    assert {name: (tmp_path / name).read_text().strip() for name in init} == values  # all put back
