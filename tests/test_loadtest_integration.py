"""The Locust DNS user against a real Unbound on loopback, run as `locust` subprocesses."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.loadtest import free_port, realtime_prefix, start_unbound
from tests.conftest import REPO

pytestmark = pytest.mark.integration

ADDRESS = "127.0.0.83"
RESOLVER = "it1"
REALTIME = realtime_prefix(5)  # timing tests: neither side starved by a busy machine (when permitted)
LOCUST = [sys.executable, "-m", "locust", "-f", str(REPO / "loadtest" / "dns.py")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A lab-zone Unbound named it1 on 127.0.0.83:<free port>, SCHED_FIFO; yields (address:port, Popen)."""
    workdir = tmp_path_factory.mktemp("unbound")
    port = free_port(ADDRESS)
    proc = start_unbound(workdir, ADDRESS, port, name=RESOLVER, realtime=True)
    yield f"{ADDRESS}:{port}", proc
    os.kill(proc.pid, signal.SIGCONT)
    proc.terminate()
    proc.wait(timeout=10)


def _locust(host: str, *args: str, seconds: float | None = 3, prefix: list[str] = ()) -> list[str]:
    """A headless Locust command line for the DNS user (after `prefix`, e.g. unshare or chrt)."""
    run_time = ["-t", f"{seconds}s"] if seconds else []
    return [*prefix, *LOCUST, "--headless", "--host", host, *run_time, "--loglevel", "WARNING", *args]


def _run(command: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _rows(directory: Path) -> list[dict]:
    with open(directory / "queries.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _locust_stats(prefix: Path) -> dict[str, dict]:
    """Locust's final stats (--json-file; its --csv files lag up to a second behind the end)."""
    entries = json.loads(Path(f"{prefix}.json").read_text())
    return {f"{e['method']} {e['name']}": e for e in entries}


def _wait_for_records(directory: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.suffix == ".dq" and p.stat().st_size > 200 for p in directory.glob("*.dq")):
            return
        time.sleep(0.05)
    raise AssertionError("no records were flushed")


def test_every_query_is_recorded_with_its_outcome_and_resolver(server, tmp_path):
    host, _ = server
    records, prefix = tmp_path / "records", tmp_path / "stats"
    names = "www.lab.test:A,nx.lab.test:A:NXDOMAIN,outside.example:A,mail.lab.test:A"
    result = _run(_locust(host, "-u", "3", "-r", "3", "--dns-rate", "600", "--dns-who-share", "0.4",
                          "--dns-tcp-share", "0.3", "--dns-names", names, "--dns-records", str(records),
                          "--json-file", str(prefix), "--csv", str(prefix)))
    assert result.returncode == 1, result.stderr  # Locust's exit code when requests failed (REFUSED)
    rows = _rows(records)
    stats = _locust_stats(prefix)
    assert len(rows) == sum(e["num_requests"] for e in stats.values()) > 1000
    assert [int(r["t_send_ns"]) for r in rows] == sorted(int(r["t_send_ns"]) for r in rows)
    by_name: dict[str, list[dict]] = {}
    for row in rows:
        by_name.setdefault(row["qname"], []).append(row)
    assert {r["outcome"] for r in by_name["who.lab.test"]} == {"ok"}
    assert {r["resolver"] for r in by_name["who.lab.test"]} == {RESOLVER}
    www = by_name["www.lab.test"]
    assert {(r["outcome"], r["rcode"], r["resolver"]) for r in www} == {("ok", "NOERROR", "")}
    assert {(r["outcome"], r["rcode"]) for r in by_name["nx.lab.test"]} == {("ok", "NXDOMAIN")}
    refused = by_name["outside.example"]
    assert {(r["outcome"], r["rcode"]) for r in refused} == {("rcode", "REFUSED")}
    assert all(float(r["latency_ms"]) > 0 for r in rows)
    assert len(by_name["who.lab.test"]) / len(rows) == pytest.approx(0.4, abs=0.03)
    assert sum(r["proto"] == "tcp" for r in rows) / len(rows) == pytest.approx(0.3, abs=0.03)
    assert len({r["worker"] for r in rows}) == 3
    udp_ports = [r["src_port"] for r in rows if r["proto"] == "udp"]
    assert len(set(udp_ports)) > len(udp_ports) / 2, "fresh mode: a new source port per query"
    failures = sum(e["num_failures"] for e in stats.values())
    outside = [stats[f"{proto} outside.example A"]["num_failures"] for proto in ("UDP", "TCP")]
    assert failures == len(refused) == sum(outside)
    assert stats["UDP nx.lab.test A"]["num_failures"] == 0
    with open(f"{prefix}_failures.csv", newline="") as handle:
        assert {row["Error"] for row in csv.DictReader(handle)} == {"REFUSED"}


def test_a_locustfile_of_ones_own_imports_the_user_and_gets_its_records(server, tmp_path):
    host, _ = server
    locustfile, records = tmp_path / "mine.py", tmp_path / "records"
    locustfile.write_text("from loadtest.user import DnsUser\n")
    command = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", host,
               "-t", "2s", "--loglevel", "WARNING", "-u", "2", "-r", "2", "--dns-rate", "200",
               "--dns-records", str(records)]
    result = _run(command)
    assert result.returncode == 0, result.stderr
    rows = _rows(records)
    assert len(rows) > 100
    assert {(r["outcome"], r["resolver"]) for r in rows} == {("ok", RESOLVER)}


def test_reuse_mode_keeps_one_source_port_per_user(server, tmp_path):
    host, _ = server
    records = tmp_path / "records"
    result = _run(_locust(host, "-u", "3", "-r", "3", "--dns-rate", "300", "--dns-socket-mode", "reuse",
                          "--dns-records", str(records), seconds=2))
    assert result.returncode == 0, result.stderr
    ports: dict[str, set[str]] = {}
    for row in _rows(records):
        ports.setdefault(row["worker"], set()).add(row["src_port"])
    assert len(ports) == 3 and all(len(p) == 1 for p in ports.values())
    assert len(set.union(*ports.values())) == 3


def test_a_stopped_server_shows_as_timeouts_and_a_stall_of_the_stop_length(server, tmp_path):
    host, unbound = server
    records = tmp_path / "records"
    load = subprocess.Popen(_locust(host, "-u", "2", "-r", "2", "--dns-rate", "1000",
                                    "--dns-timeout-ms", "250", "--dns-records", str(records), seconds=None,
                                    prefix=REALTIME),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_records(records)
        time.sleep(0.5)
        stopped_ns = time.time_ns()
        os.kill(unbound.pid, signal.SIGSTOP)
        time.sleep(0.6)
        resumed_ns = time.time_ns()
        os.kill(unbound.pid, signal.SIGCONT)
        time.sleep(1.0)
        load.send_signal(signal.SIGINT)
        assert load.wait(timeout=60) in (0, 1), load.stderr.read()
    finally:
        os.kill(unbound.pid, signal.SIGCONT)
        if load.poll() is None:
            load.kill()
    rows = _rows(records)
    timeouts = [int(r["t_send_ns"]) for r in rows if r["outcome"] == "timeout"]
    assert len(timeouts) > 200
    # sent while stopped (or within the timeout before it, or before Unbound drained its full buffer);
    # a loaded machine may starve Unbound past the timeout elsewhere, so tolerate a few strays
    inside = [t for t in timeouts if stopped_ns - 270e6 <= t <= resumed_ns + 20e6]
    assert len(inside) >= 0.98 * len(timeouts)
    answers = sorted(int(r["t_send_ns"]) + float(r["latency_ms"]) * 1e6 for r in rows if r["outcome"] == "ok")
    stall_ns = max(b - a for a, b in zip(answers, answers[1:], strict=False))
    assert stall_ns == pytest.approx(resumed_ns - stopped_ns, abs=20e6)
    assert {r["outcome"] for r in rows} == {"ok", "timeout"}


def _lookups(rows: list[dict]) -> dict[tuple[str, int], list[dict]]:
    """Rows grouped by lookup (worker, lookup_id), each list in attempt order."""
    out: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        out.setdefault((row["worker"], int(row["lookup_id"])), []).append(row)
    return {key: sorted(group, key=lambda r: int(r["attempt"])) for key, group in out.items()}


def test_a_glibc_client_hides_a_short_stop_by_retrying_from_the_same_port(server, tmp_path):
    host, unbound = server
    records = tmp_path / "records"
    load = subprocess.Popen(_locust(host, "-u", "2", "-r", "2", "--dns-rate", "200",
                                    "--dns-client", "glibc", "--dns-timeout-ms", "100", "--dns-attempts", "4",
                                    "--dns-records", str(records), seconds=None,
                                    prefix=REALTIME),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_records(records)
        os.kill(unbound.pid, signal.SIGSTOP)
        time.sleep(0.25)
        os.kill(unbound.pid, signal.SIGCONT)
        time.sleep(0.5)
        load.send_signal(signal.SIGINT)
        assert load.wait(timeout=60) == 0, load.stderr.read()  # 0: every lookup succeeded
    finally:
        os.kill(unbound.pid, signal.SIGCONT)
        if load.poll() is None:
            load.kill()
    lookups = _lookups(_rows(records))
    assert all(group[-1]["outcome"] == "ok" for group in lookups.values())
    retried = [group for group in lookups.values() if len(group) > 1]
    assert len(retried) >= 20
    for group in retried:
        assert [int(r["attempt"]) for r in group] == list(range(len(group)))
        assert {r["outcome"] for r in group[:-1]} == {"timeout"}
        assert len({r["src_port"] for r in group}) == 1, "glibc keeps a nameserver's socket after a timeout"
        sends = [int(r["t_send_ns"]) for r in group]
        assert all(95e6 <= b - a <= 140e6 for a, b in zip(sends, sends[1:], strict=False)), sends
        answer = sends[-1] + float(group[-1]["latency_ms"]) * 1e6
        assert answer - sends[0] < 400e6


@pytest.mark.parametrize("dead", ["refusing", "silent"])
def test_a_glibc_lookup_gets_past_a_dead_first_nameserver_and_its_records_say_so(server, tmp_path, dead):
    """nameservers = dead, Unbound: every lookup fails on the first and succeeds on the second, at once
    after port unreachable (refusing: nothing listens there) or after the 200 ms wait (silent: a socket
    that never reads)."""
    host, _ = server
    records = tmp_path / "records"
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.85", 0))
    dead_address = "{}:{}".format(*silent.getsockname())
    if dead == "refusing":
        silent.close()
    try:
        result = _run(_locust(host, "-u", "2", "-r", "2", "--dns-rate", "50", "--dns-client", "glibc",
                              "--dns-timeout-ms", "200", "--dns-attempts", "2",
                              "--dns-nameservers", f"{dead_address},{host}", "--dns-records", str(records),
                              seconds=3))
    finally:
        silent.close()
    assert result.returncode == 0, result.stderr  # every lookup succeeded
    lookups = _lookups(_rows(records))
    assert len(lookups) >= 20
    first_outcome = "error" if dead == "refusing" else "timeout"
    last = {}
    for (worker, _), group in lookups.items():
        last[worker] = max(last.get(worker, 0), *(int(r["t_send_ns"]) for r in group))
    cut = [(key, group[0]) for key, group in lookups.items() if len(group) == 1]  # 2nd in flight at the stop
    assert all(int(first["t_send_ns"]) > last[key[0]] - 500e6 for key, first in cut)
    for first, second, *more in (group for group in lookups.values() if len(group) > 1):
        assert not more
        assert (first["attempt"], first["outcome"], first["resolver"]) == ("0", first_outcome, "")
        assert (second["attempt"], second["outcome"], second["resolver"]) == ("1", "ok", RESOLVER)
        gap_ms = (int(second["t_send_ns"]) - int(first["t_send_ns"])) / 1e6
        # refused: the next nameserver at once, well inside the 200 ms timeout; silent: after it (the
        # upper bounds leave room for a busy 2-core host)
        assert gap_ms < 100 if dead == "refusing" else 195 <= gap_ms < 350, gap_ms
        assert first["src_port"] != second["src_port"], "one socket per nameserver"


def test_a_musl_lookup_asks_both_nameservers_and_takes_the_live_ones_answer(server, tmp_path):
    host, _ = server
    records = tmp_path / "records"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.85", 0))
        dead_address = "{}:{}".format(*silent.getsockname())
        result = _run(_locust(host, "-u", "1", "-r", "1", "--dns-rate", "50", "--dns-client", "musl",
                              "--dns-timeout-ms", "300", "--dns-attempts", "2",
                              "--dns-nameservers", f"{dead_address},{host}", "--dns-records", str(records),
                              seconds=3))
    assert result.returncode == 0, result.stderr
    lookups = _lookups(_rows(records))
    assert len(lookups) >= 20
    complete = [group for group in lookups.values() if len(group) == 2]  # the last ones: cut at the stop
    assert len(complete) >= 10 and len(complete) >= len(lookups) - 20
    for dead_query, live in complete:
        assert (dead_query["attempt"], dead_query["outcome"]) == ("0", "timeout")
        assert (live["attempt"], live["outcome"], live["resolver"]) == ("1", "ok", RESOLVER)
        assert dead_query["src_port"] == live["src_port"], "one socket per lookup"
        assert abs(int(live["t_send_ns"]) - int(dead_query["t_send_ns"])) < 10e6


def test_a_sigkilled_run_leaves_its_flushed_records(server, tmp_path):
    host, _ = server
    records = tmp_path / "records"
    load = subprocess.Popen(_locust(host, "-u", "2", "-r", "2", "--dns-rate", "500",
                                    "--dns-records", str(records), seconds=None), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_records(records)
        time.sleep(1.5)
    finally:
        load.send_signal(signal.SIGKILL)
        load.wait()
    merged = _run([sys.executable, "-m", "loadtest.merge", str(records)])
    assert merged.returncode == 0, merged.stderr
    rows = _rows(records)
    assert len(rows) >= 500
    assert all(r["outcome"] == "ok" and r["resolver"] == RESOLVER for r in rows)
    assert [int(r["t_send_ns"]) for r in rows] == sorted(int(r["t_send_ns"]) for r in rows)


def test_processes_each_write_a_file_and_the_merge_covers_them_all(server, tmp_path):
    host, _ = server
    records, prefix = tmp_path / "records", tmp_path / "stats"
    result = _run(_locust(host, "--processes", "2", "-u", "4", "-r", "4", "--dns-rate", "400",
                          "--dns-records", str(records), "--json-file", str(prefix), seconds=3), timeout=90)
    assert result.returncode == 0, result.stderr
    assert len(list(records.glob("*.dq"))) == 2
    rows = _rows(records)
    assert len(rows) == sum(e["num_requests"] for e in _locust_stats(prefix).values()) > 500
    sends: dict[str, list[int]] = {}
    for row in rows:
        sends.setdefault(row["worker"], []).append(int(row["t_send_ns"]))
    assert len(sends) == 4
    rates = [(len(t) - 1) / ((max(t) - min(t)) / 1e9) for t in sends.values()]
    assert sum(rates) == pytest.approx(400, rel=0.05), "--dns-rate is the total over all workers' users"


@pytest.mark.parametrize(("args", "prefix", "expected"), [
    (["--dns-rate", "fast"], [], "--dns-rate: must be a number, got 'fast'"),
    (["--dns-client", "bind"], [], "--dns-client: must be one of raw, glibc, musl, got 'bind'"),
    (["--dns-nameservers", "127.0.0.1,300.1.1.1"], [], "--dns-nameservers: '300.1.1.1' is not IPv4"),
    (["--dns-records", "/proc/version/x"], [], "--dns-records: '/proc/version/x' is not writable"),
    # in a fresh network namespace, so the name lookup cannot leave the machine
    ([], ["unshare", "-n", "--"], "--host: cannot resolve 'no-such-host.invalid'"),
])
def test_bad_input_is_one_line_and_no_load(server, args, prefix, expected):
    if prefix and subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("needs `unshare -n` (root): a name lookup must not reach the host's resolver")
    host = "no-such-host.invalid:53" if prefix else server[0]
    started = time.monotonic()
    result = _run(_locust(host, "-u", "1", "-r", "1", *args, prefix=prefix), timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"dnslab loadtest: error: {expected}")
    assert "Traceback" not in result.stderr and "Ramping" not in result.stderr
    assert time.monotonic() - started < 15


def test_a_dead_server_gives_errors_and_tcp_reconnects_after_it_returns(tmp_path):
    workdir, records = tmp_path / "unbound", tmp_path / "records"
    workdir.mkdir()
    address = "127.0.0.84"
    port = free_port(address)
    unbound = start_unbound(workdir, address, port, name="back", realtime=True)
    load = subprocess.Popen(_locust(f"{address}:{port}", "-u", "2", "-r", "2", "--dns-rate", "400",
                                    "--dns-tcp-share", "0.5", "--dns-timeout-ms", "200",
                                    "--dns-records", str(records), seconds=None),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_records(records)
        time.sleep(0.3)
        unbound.terminate()
        unbound.wait(timeout=10)
        died_ns = time.time_ns()
        time.sleep(0.7)
        restart_ns = time.time_ns()
        unbound = start_unbound(workdir, address, port, name="back", realtime=True)
        back_ns = time.time_ns()
        time.sleep(1.5)
        load.send_signal(signal.SIGINT)
        assert load.wait(timeout=60) == 1, load.stderr.read()
    finally:
        unbound.terminate()
        unbound.wait(timeout=10)
        if load.poll() is None:
            load.kill()
    rows = _rows(records)
    dead = [r for r in rows if died_ns <= int(r["t_send_ns"]) < restart_ns]
    assert dead and {r["outcome"] for r in dead} == {"error"}, "refused UDP and TCP fail at once"
    assert {r["proto"] for r in dead} == {"udp", "tcp"}
    after = [r for r in rows if int(r["t_send_ns"]) > back_ns + 100e6]
    assert len(after) > 200 and {r["outcome"] for r in after} == {"ok"}
    assert {r["proto"] for r in after} == {"udp", "tcp"}
