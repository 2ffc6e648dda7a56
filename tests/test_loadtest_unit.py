"""Unit tests of the load generator's pure parts: wire format, knobs, schedule, records, merge."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from types import SimpleNamespace

import dns.message
import dns.rcode
import dns.rrset
import pytest

from bench.loadtest import send_accuracy
from loadtest.knobs import DNS_KNOBS
from loadtest.merge import HEADER, merge
from loadtest.options import (
    LoadError,
    Query,
    build_schedule,
    check_records_dir,
    parse_queries,
    parse_settings,
)
from loadtest.records import NO_RCODE, OK, RCODE, TIMEOUT, Recorder, read_worker_file
from loadtest.wire import encode_query, first_txt, rcode_name, reply_header, with_id
from tests.conftest import REPO


def _options(**overrides) -> SimpleNamespace:
    """Locust's parsed options with every --dns-* flag at its default (as text, as Locust gives them)."""
    values = {knob.dest: knob.text(knob.default) for knob in DNS_KNOBS}
    values.update(overrides)
    return SimpleNamespace(**values)


def _reply(query: bytes, txt: str | None = None, rcode: int = 0) -> bytes:
    message = dns.message.make_response(dns.message.from_wire(query))
    message.set_rcode(dns.rcode.Rcode(rcode))
    if txt is not None:
        message.answer.append(dns.rrset.from_text(message.question[0].name, 0, "IN", "TXT", f'"{txt}"'))
    return message.to_wire()


def test_query_is_encoded_once_and_only_the_id_changes():
    query = encode_query("who.lab.test", "TXT")
    patched = with_id(query, 0xBEEF)
    assert patched[:2] == b"\xbe\xef" and patched[2:] == query[2:]
    parsed = dns.message.from_wire(patched)
    assert parsed.id == 0xBEEF and str(parsed.question[0].name) == "who.lab.test."
    assert parsed.edns < 0, "no EDNS, so the answer section starts right after the question"


def test_reply_header_and_resolver_name():
    query = with_id(encode_query("who.lab.test", "TXT"), 4242)
    assert reply_header(_reply(query, "rs2")) == (4242, 0)
    assert first_txt(_reply(query, "rs2"), len(query)) == "rs2"
    assert first_txt(_reply(query), len(query)) == ""
    assert reply_header(_reply(query, rcode=5)) == (4242, 5)
    assert first_txt(_reply(query)[:20], len(query)) == ""
    a_query = encode_query("www.lab.test", "A")
    a_reply = dns.message.make_response(dns.message.from_wire(a_query))
    a_reply.answer.append(dns.rrset.from_text("www.lab.test.", 60, "IN", "A", "192.0.2.10"))
    assert first_txt(a_reply.to_wire(), len(a_query)) == ""
    assert rcode_name(3) == "NXDOMAIN"


def test_names_parse_with_types_and_expected_rcodes():
    assert parse_queries("www.lab.test, nx.lab.test:aaaa:nxdomain,lab.test:MX") == (
        Query("www.lab.test", "A", 0), Query("nx.lab.test", "AAAA", 3), Query("lab.test", "MX", 0))
    for bad in ("www.lab.test:BOGUS", "a:A:NOPE", "a:A:NOERROR:x"):
        with pytest.raises(LoadError, match="--dns-names"):
            parse_queries(bad)


@pytest.mark.parametrize(("key", "value", "flag"), [
    ("dns_rate", "fast", "--dns-rate"), ("dns_rate", "-1", "--dns-rate"),
    ("dns_tcp_share", "1.5", "--dns-tcp-share"), ("dns_who_share", "nan", "--dns-who-share"),
    ("dns_timeout_ms", "0", "--dns-timeout-ms"), ("dns_socket_mode", "sticky", "--dns-socket-mode"),
    ("dns_port", "70000", "--dns-port"), ("dns_attempts", "1.5", "--dns-attempts"),
    ("dns_attempts", "0", "--dns-attempts"), ("dns_timeout_ms", "-5", "--dns-timeout-ms"),
    ("dns_timeout_ms", "inf", "--dns-timeout-ms"), ("dns_client", "bind", "--dns-client"),
    ("dns_rotate", "maybe", "--dns-rotate"), ("dns_nameservers", "127.0.0.1,,127.0.0.2", "--dns-nameservers"),
    ("dns_nameservers", "127.0.0.1:0", "--dns-nameservers"), ("dns_nameservers", "ns1", "--dns-nameservers"),
    ("dns_nameservers", "10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4", "--dns-nameservers"),
])
def test_bad_knobs_name_the_flag(key, value, flag):
    with pytest.raises(LoadError) as info:
        parse_settings(_options(**{key: value}))
    message = str(info.value)
    assert message.startswith(flag) and "\n" not in message


@pytest.mark.parametrize(("overrides", "message"), [
    ({"dns_client": "glibc", "dns_tcp_share": "0.5"}, "--dns-tcp-share: must be 0 with client = glibc"),
    ({"dns_client": "glibc", "dns_attempts": "6"}, "--dns-attempts: glibc allows at most 5, got 6"),
    ({"dns_client": "glibc", "dns_timeout_ms": "31000"}, "--dns-timeout-ms: glibc allows at most 30000 ms"),
    ({"dns_client": "musl", "dns_timeout_ms": "5", "dns_attempts": "10"},
     "--dns-timeout-ms: musl resends every timeout/attempts ms: give at least 10 ms"),
])
def test_settings_that_do_not_go_together_name_a_flag(overrides, message):
    with pytest.raises(LoadError) as info:
        parse_settings(_options(**overrides))
    assert str(info.value).startswith(message)


def test_settings_defaults_and_window_by_model():
    closed = parse_settings(_options())
    assert closed.queries[0] == Query("who.lab.test", "TXT") and closed.window == 100
    assert (closed.client, closed.nameservers, closed.attempts) == ("raw", (), 2)
    assert parse_settings(_options(dns_rate="500")).window == 10_000
    assert parse_settings(_options(dns_timeout_ms="100")).scan_interval_s == pytest.approx(0.005)
    stub = parse_settings(_options(dns_client="glibc", dns_rotate="true", dns_port="5353",
                                   dns_nameservers="127.0.0.1, 127.0.0.2:53"))
    assert stub.rotate and stub.nameservers == (("127.0.0.1", 5353), ("127.0.0.2", 53))
    with pytest.raises(LoadError, match="--dns-names"):
        parse_settings(_options(dns_names="", dns_who_share="0.5"))


def test_schedule_keeps_the_shares_and_spreads_them():
    settings = parse_settings(_options(dns_who_share="0.3", dns_tcp_share="0.25",
                                       dns_names="a.lab.test,b.lab.test"))
    schedule = build_schedule(settings)
    n = len(schedule)
    assert sum(q == 0 for q, _ in schedule) / n == pytest.approx(0.3, abs=0.001)
    assert sum(p for _, p in schedule) / n == pytest.approx(0.25, abs=0.001)
    assert abs(sum(q == 1 for q, _ in schedule) - sum(q == 2 for q, _ in schedule)) <= 1
    first_hundred = schedule[:100]
    assert 25 <= sum(q == 0 for q, _ in first_hundred) <= 35, "shares hold locally, not only on average"
    assert 20 <= sum(p for _, p in first_hundred) <= 30


def test_records_dir_must_be_writable(tmp_path):
    check_records_dir(str(tmp_path / "new" / "dir"))
    assert (tmp_path / "new" / "dir").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LoadError, match="--dns-records"):
        check_records_dir(str(blocker))


def test_records_round_trip_and_a_torn_last_chunk_is_ignored(tmp_path):
    recorder = Recorder(str(tmp_path), "w1", [("who.lab.test", "TXT"), ("www.lab.test", "A")])
    assert recorder.resolver_index("") == 0 and recorder.resolver_index("rs1") == 1
    recorder.add_batch([1_000], [250_000], [40000], 0, [0], ["rs1"], [OK], [0], [0], [7], [0])
    recorder.add_batch([2_000], [-1], [40001], 1, [1], [""], [TIMEOUT], [NO_RCODE], [1], [8], [0])
    assert recorder.flush() == 2
    recorder.add_batch([3_000, 4_000], [100, 200], [40002, 40003], 1, [1, 0], ["", "rs2"], [RCODE, OK],
                       [5, 0], [0, 0], [8, 8], [1, 2])
    recorder.flush()
    size_before_torn = os.path.getsize(recorder.path)
    with open(recorder.path, "ab") as handle:  # a chunk cut short, as a SIGKILL mid-write leaves it
        handle.write(b"DQR\x00\xff\x00\x00\x00partial")
    wf = read_worker_file(recorder.path)
    assert wf.worker == "w1" and not wf.complete and wf.resolvers == ["", "rs1", "rs2"]
    assert list(wf.rows()) == [(1_000, 250_000, 40000, 0, 0, 1, OK, 0, 0, 7, 0),
                               (2_000, -1, 40001, 1, 1, 0, TIMEOUT, NO_RCODE, 1, 8, 0),
                               (3_000, 100, 40002, 1, 1, 0, RCODE, 5, 0, 8, 1),
                               (4_000, 200, 40003, 1, 0, 2, OK, 0, 0, 8, 2)]
    assert size_before_torn < os.path.getsize(recorder.path)


def test_records_are_flushed_with_the_batches_once_the_interval_passed(tmp_path):
    """A generator that cannot keep up never lets a flush timer fire: each batch flushes when due."""
    recorder = Recorder(str(tmp_path), "w1", [("who.lab.test", "TXT")])
    batch = ([1_000], [250_000], [40000], 0, [0], ["rs1"], [OK], [0], [0], [7], [0])
    recorder.add_batch(*batch)
    assert recorder.flush_if_due(every_s=3600) == 0 and len(read_worker_file(recorder.path).columns[0]) == 0
    recorder.add_batch(*batch)
    assert recorder.flush_if_due(every_s=0) == 2
    assert list(read_worker_file(recorder.path).columns[0]) == [1_000, 1_000]
    assert recorder.flush_if_due(every_s=3600) == 0, "the interval starts again at each flush"


def test_merge_sorts_all_workers_by_send_time(tmp_path):
    queries = [("who.lab.test", "TXT"), ("nx.lab.test", "A")]
    a, b = Recorder(str(tmp_path), "hostA-1", queries), Recorder(str(tmp_path), "hostA-2", queries)
    a.add_batch([30, 10], [1_500_000, -1], [1111, 1112], 0, [0, 1], ["rs3", ""], [OK, TIMEOUT],
                [0, NO_RCODE], [0, 1], [1, 0], [0, 0])
    b.add_batch([20], [2_000], [2222], 4, [1], [""], [OK], [3], [0], [0], [1])
    a.close()
    b.flush()  # b never closes: as after a SIGKILL
    path, count = merge(str(tmp_path))
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert count == 3 and tuple(rows[0]) == HEADER
    assert rows[1:] == [
        ["10", "", "timeout", "", "", "tcp", "nx.lab.test", "A", "1112", "hostA-1.u0", "0", "0"],
        ["20", "0.002", "ok", "NXDOMAIN", "", "udp", "nx.lab.test", "A", "2222", "hostA-2.u4", "0", "1"],
        ["30", "1.500", "ok", "NOERROR", "rs3", "udp", "who.lab.test", "TXT", "1111", "hostA-1.u0", "1", "0"],
    ]


def test_send_accuracy_fits_each_users_schedule():
    from array import array

    interval = 4_000_000  # 250 q/s
    late = [1_000_000 if i % 100 == 0 else 0 for i in range(1000)]
    user = array("q", (5_000_000_000 + i * interval + late[i] for i in range(1000)))
    result = send_accuracy([user, array("q", (t + 7 for t in user))], 250.0)
    assert result["achieved_qps"] == pytest.approx(500, rel=0.001)
    assert result["jitter_p99_ms"] == pytest.approx(1.0, abs=0.01)


BULK_STATS_CHECK = """
import time
from locust.stats import RequestStats
from loadtest.stats import add_answered

times = [0.2, 0.35, 1.7, 12.4, 0.05, 140.0]
bulk, single = RequestStats(), RequestStats()
now = time.time()
add_answered(bulk, "UDP", "who.lab.test TXT", times, now)
for t in times:
    single.log_request("UDP", "who.lab.test TXT", t, 0)
for b, s in ((bulk.get("who.lab.test TXT", "UDP"), single.get("who.lab.test TXT", "UDP")),
             (bulk.total, single.total)):
    assert (b.num_requests, b.num_failures) == (6, 0), b.num_requests
    assert abs(b.total_response_time - sum(times)) < 1e-9
    assert (b.min_response_time, b.max_response_time) == (s.min_response_time, s.max_response_time)
    assert b.response_times == s.response_times
    assert sum(b.num_reqs_per_sec.values()) == 6
    assert b.median_response_time == s.median_response_time
    assert b.get_response_time_percentile(0.99) == s.get_response_time_percentile(0.99)
print("bulk stats ok")
"""


def test_bulk_stats_equal_one_request_event_per_query():
    # In a child process: `import locust` monkey-patches with gevent, which deadlocks on the import
    # lock inside a pytest process that already runs threads (the e2e tests' SSH transports).
    proc = subprocess.run([sys.executable, "-c", BULK_STATS_CHECK], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "bulk stats ok"


def test_a_batch_interrupted_between_columns_never_misaligns_the_file(tmp_path):
    from loadtest.records import Recorder, read_worker_file

    rec = Recorder(str(tmp_path), "w1", [("who.lab.test", "TXT")])
    rec.add_batch([1, 2], [10, 20], [1000, 1001], 0, [0, 0], ["rs1", "rs2"], [0, 0], [0, 0], [0, 0], [0, 1],
                  [0, 0])
    # as if SIGINT's KeyboardInterrupt struck after the first two columns of the next batch
    rec._cols[0].extend([3, 4])
    rec._cols[1].extend([30, 40])
    rec.close()
    wf = read_worker_file(rec.path)
    assert [row[0] for row in wf.rows()] == [1, 2]
    assert wf.complete


def test_a_chunk_whose_size_contradicts_its_count_is_skipped(tmp_path):
    from loadtest.records import _CHUNK, _COUNT, Recorder, read_worker_file

    rec = Recorder(str(tmp_path), "w1", [("who.lab.test", "TXT")])
    rec.add_batch([1], [10], [1000], 0, [0], ["rs1"], [0], [0], [0], [0], [0])
    rec.flush()
    bad = _COUNT.pack(5) + bytes(17)  # 5 rows announced, far fewer bytes
    with open(rec.path, "ab") as handle:
        handle.write(_CHUNK.pack(b"DQ", ord("R"), len(bad)) + bad)
    rec.add_batch([2], [20], [1001], 0, [0], ["rs1"], [0], [0], [0], [1], [0])
    rec.close()
    assert [row[0] for row in read_worker_file(rec.path).rows()] == [1, 2]
