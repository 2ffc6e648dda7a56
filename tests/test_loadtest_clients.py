"""The client models: their schedules against the C sources they copy, then the engine following them
against loopback nameservers that answer, refuse (closed port), stay silent or fail (SERVFAIL).

The engine runs in this process on gevent's hub; the nameservers are gevent greenlets, so nothing here
monkey-patches. Times are checked with the engine's timer resolution plus scheduling slack.
"""

from __future__ import annotations

import socket as stdsocket
import time

import dns.message
import dns.rcode
import dns.rrset
import gevent
import pytest
from gevent import socket as gsocket

from loadtest.clients import (
    glibc_next,
    glibc_offset,
    glibc_plan,
    glibc_timeouts_ms,
    musl_plan,
    musl_retry_interval_ms,
    scan_interval_s,
)
from loadtest.engine import Engine
from loadtest.options import Query, Settings
from loadtest.records import ERROR, OK, RCODE, TIMEOUT
from loadtest.wire import encode_query

SLACK_MS = 150  # how late a timer may fire on a loaded machine (never early); waits here differ by more
QUICK_NS = 150e6  # "at once": well under the 1 s (glibc) or 300 ms (musl) the slow path would take


def within(gap_ns: float, want_ms: float) -> bool:
    """A wait measured from the engine's own send times: at least `want_ms`, at most SLACK_MS late."""
    return want_ms - 0.5 <= gap_ns / 1e6 <= want_ms + SLACK_MS


# -- the schedules, as the sources define them --------------------------------------------------------


def test_glibc_waits_follow_send_dg_per_nameserver_index():
    # seconds = retrans << ns; if (ns > 0) seconds /= nscount; if (seconds <= 0) seconds = 1
    assert glibc_timeouts_ms(5000, 1) == (5000,)
    assert glibc_timeouts_ms(5000, 2) == (5000, 5000)
    assert glibc_timeouts_ms(5000, 3) == (5000, 3000, 6000)
    assert glibc_timeouts_ms(1000, 3) == (1000, 1000, 1000)  # 2/3 = 0 -> 1 s; 4/3 = 1 s
    assert glibc_timeouts_ms(2000, 3) == (2000, 1000, 2000)
    assert glibc_timeouts_ms(100, 3) == (100, 66, 133)  # fractional seconds: the same, in ms


def test_glibc_passes_go_over_every_nameserver_then_repeat():
    assert glibc_plan(5000, 2, 1) == [(0, 0), (5000, 0)]
    assert glibc_plan(5000, 2, 2) == [(0, 0), (5000, 1), (10000, 0), (15000, 1)]
    assert glibc_plan(5000, 1, 3) == [(0, 0), (5000, 1), (8000, 2)]
    # rotate: the pass starts at the offset; each nameserver keeps its own wait
    assert glibc_plan(5000, 2, 3, ns_offset=1) == [(0, 1), (3000, 2), (9000, 0), (14000, 1), (17000, 2),
                                                     (23000, 0)]
    assert glibc_next(0, 0, attempts=1, nscount=1) is None
    assert glibc_next(0, 1, attempts=2, nscount=2) == (1, 0)


def test_glibc_rotate_starts_consecutive_lookups_at_consecutive_nameservers():
    assert [glibc_offset(n, 3, rotate=True) for n in range(7, 12)] == [1, 2, 0, 1, 2]
    assert {glibc_offset(n, 3, rotate=False) for n in range(5)} == {0}
    assert {glibc_offset(n, 1, rotate=True) for n in range(5)} == {0}


def test_musl_resends_to_all_every_timeout_over_attempts_while_under_the_timeout():
    assert musl_retry_interval_ms(5000, 2) == 2500
    assert musl_plan(5000, 2, 1) == [(0, 0), (2500, 0)]
    assert musl_plan(5000, 1, 2) == [(0, 0), (0, 1)]
    # 5000 / 3 = 1666 ms: rounds at 0, 1666, 3332 and 4998 (< 5000), so four rounds
    assert [t for t, ns in musl_plan(5000, 3, 2) if ns == 0] == [0, 1666, 3332, 4998]


def test_timer_resolution_follows_the_shortest_timer():
    assert scan_interval_s("raw", 100, 1, 1) == pytest.approx(0.005)
    assert scan_interval_s("glibc", 5000, 2, 3) == 0.01
    assert scan_interval_s("glibc", 60, 2, 3) == pytest.approx(0.002)  # waits 60, 40, 80 ms
    assert scan_interval_s("musl", 100, 5, 1) == 0.001


# -- the engine against loopback nameservers ----------------------------------------------------------


class Nameserver:
    """A UDP nameserver on loopback: answers, stays silent, or answers with `rcode`; logs what came."""

    def __init__(self, address: str, mode: str = "answer", rcode: int = 0) -> None:
        self.sock = gsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.target = self.sock.getsockname()
        self.mode, self.rcode = mode, rcode
        self.received: list[tuple[float, int, int]] = []  # (monotonic s, source port, query id)
        self.task = gevent.spawn(self._serve)

    def _serve(self) -> None:
        while True:
            data, source = self.sock.recvfrom(4096)
            query = dns.message.from_wire(data)
            self.received.append((time.monotonic(), source[1], query.id))
            if self.mode == "silent":
                continue
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.Rcode(self.rcode))
            if self.rcode == 0:
                reply.answer.append(dns.rrset.from_text(query.question[0].name, 0, "IN", "TXT", '"fake"'))
            self.sock.sendto(reply.to_wire(), source)

    def close(self) -> None:
        self.task.kill()
        self.sock.close()


def closed_port(address: str) -> tuple[str, int]:
    """An address:port where nothing listens: a send there draws ICMP port unreachable."""
    with stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM) as probe:
        probe.bind((address, 0))
        return probe.getsockname()


@pytest.fixture
def servers():
    made: list[Nameserver] = []

    def make(mode: str = "answer", rcode: int = 0, address: str = "127.0.0.90") -> Nameserver:
        made.append(Nameserver(address, mode, rcode))
        return made[-1]

    yield make
    for server in made:
        server.close()


def settings(client: str, timeout_ms: float, attempts: int = 2, rotate: bool = False,
             socket_mode: str = "fresh") -> Settings:
    return Settings(rate=1.0, window=100, client=client, timeout_ms=timeout_ms, attempts=attempts,
                    rotate=rotate, nameservers=(), tcp_share=0.0, who_share=1.0,
                    queries=(Query("who.lab.test", "TXT"),), socket_mode=socket_mode, records="", port=53)


def run(config: Settings, targets, lookups: int = 1, wait_s: float = 1.0, start: int = 0) -> Engine:
    """Start `lookups` lookups one after another on an engine, let it run `wait_s`, return it closed."""
    engine = Engine(config, targets, [encode_query("who.lab.test", "TXT")], [0], [(0, 0)], start=start)
    engine.start()
    for _ in range(lookups):
        engine.send_next()
        gevent.sleep(0.02)
    gevent.sleep(wait_s)
    engine.close()
    return engine


def rows(engine: Engine) -> list[dict]:
    names = ("sent", "latency", "port", "query", "resolver", "outcome", "rcode", "proto", "lookup", "attempt")
    return [dict(zip(names, row, strict=True)) for row in engine.done]


def test_glibc_waits_for_each_nameserver_by_its_index(servers):
    a, b, c = servers("silent"), servers("silent"), servers("silent")
    engine = run(settings("glibc", 600, attempts=1), [a.target, b.target, c.target], wait_s=2.2)
    # waits 600, 400 and 800 ms: sends at 0 (a), 600 (b), 1000 (c), the lookup fails at 1800
    plan = glibc_plan(600, 1, 3)
    got = sorted((t, i) for i, server in enumerate((a, b, c)) for t, _, _ in server.received)
    assert [i for _, i in got] == [ns for _, ns in plan] == [0, 1, 2]
    records = rows(engine)
    assert [(r["attempt"], r["outcome"]) for r in records] == [(0, TIMEOUT), (1, TIMEOUT), (2, TIMEOUT)]
    sent = [r["sent"] for r in records]
    assert within(sent[1] - sent[0], 600) and within(sent[2] - sent[1], 400), sent
    (query, _, outcome, _, elapsed), = engine.lookups
    assert outcome == TIMEOUT and within(elapsed - (sent[2] - sent[0]), 800)
    assert len({qid for s in (a, b, c) for _, _, qid in s.received}) == 1, "one query ID per lookup"


def test_glibc_passes_reuse_a_nameservers_socket_and_query_id_after_a_timeout(servers):
    silent = servers("silent")
    engine = run(settings("glibc", 200, attempts=3), [silent.target], wait_s=0.9)
    records = rows(engine)
    assert [(r["attempt"], r["outcome"]) for r in records] == [(0, TIMEOUT), (1, TIMEOUT), (2, TIMEOUT)]
    sent = [r["sent"] for r in records]
    assert all(within(t1 - t0, 200) for t0, t1 in zip(sent, sent[1:], strict=False)), sent
    assert len({(port, qid) for _, port, qid in silent.received}) == 1 and len(silent.received) == 3
    assert {r["lookup"] for r in records} == {0}


def test_glibc_takes_the_next_nameserver_at_once_after_port_unreachable(servers):
    good = servers("answer")
    engine = run(settings("glibc", 1000, attempts=2), [closed_port("127.0.0.91"), good.target], wait_s=0.2)
    records = rows(engine)
    assert [(r["attempt"], r["outcome"]) for r in records] == [(0, ERROR), (1, OK)]
    assert records[1]["sent"] - records[0]["sent"] < QUICK_NS
    (_, _, outcome, _, elapsed), = engine.lookups
    assert outcome == OK and elapsed < QUICK_NS
    assert records[0]["port"] != records[1]["port"]


def test_glibc_closes_every_socket_of_the_lookup_after_an_icmp_error(servers):
    silent = servers("silent")
    engine = run(settings("glibc", 100, attempts=2), [silent.target, closed_port("127.0.0.91")], wait_s=0.5)
    records = rows(engine)
    assert [(r["attempt"], r["outcome"]) for r in records] == [(0, TIMEOUT), (1, ERROR), (2, TIMEOUT),
                                                              (3, ERROR)]
    first, second = silent.received
    assert first[1] != second[1], "__res_iclose: the second pass opens a new socket"
    assert within(records[2]["sent"] - records[0]["sent"], 100), "the refusal cost no wait"


def test_glibc_takes_the_next_nameserver_after_servfail_or_refused_but_not_nxdomain(servers):
    failing, refusing, good = servers("answer", 2), servers("answer", 5), servers("answer")
    engine = run(settings("glibc", 1000, attempts=1), [failing.target, refusing.target, good.target],
                 wait_s=0.2)
    assert [(r["attempt"], r["outcome"], r["rcode"]) for r in rows(engine)] == [
        (0, RCODE, 2), (1, RCODE, 5), (2, OK, 0)]
    nx = servers("answer", 3)
    engine = run(settings("glibc", 1000, attempts=1), [nx.target, good.target], wait_s=0.2)
    assert [(r["outcome"], r["rcode"]) for r in rows(engine)] == [(RCODE, 3)]
    assert engine.lookups[0][2:4] == (RCODE, 3)


def test_glibc_rotate_spreads_lookups_and_reuse_keeps_one_port_per_nameserver(servers):
    trio = (servers("answer"), servers("answer"), servers("answer"))
    targets = [s.target for s in trio]
    run(settings("glibc", 1000, rotate=True), targets, lookups=6, wait_s=0.1, start=1)
    assert [len(s.received) for s in trio] == [2, 2, 2]
    order = sorted((t, i) for i, s in enumerate(trio) for t, _, _ in s.received)
    assert [i for _, i in order] == [1, 2, 0, 1, 2, 0]
    for s in trio:
        s.received.clear()
    run(settings("glibc", 1000, socket_mode="reuse"), targets, lookups=4, wait_s=0.1)
    assert [len(s.received) for s in trio] == [4, 0, 0], "without rotate every lookup starts at the first"
    assert len({port for _, port, _ in trio[0].received}) == 1


def test_musl_asks_every_nameserver_at_once_and_the_first_answer_wins(servers):
    silent, good = servers("silent"), servers("answer")
    engine = run(settings("musl", 300, attempts=2), [silent.target, good.target], wait_s=0.5)
    records = rows(engine)
    assert sorted((r["attempt"], r["outcome"]) for r in records) == [(0, TIMEOUT), (1, OK)]
    assert len({r["port"] for r in records}) == 1, "one socket per lookup"
    assert abs(records[0]["sent"] - records[1]["sent"]) < 5e6, "sent together"
    (_, _, outcome, _, elapsed), = engine.lookups
    assert outcome == OK and elapsed < QUICK_NS
    assert len(silent.received) == 1, "no second round once answered"


def test_musl_resends_each_round_from_one_socket_and_fails_at_its_timeout(servers):
    a, b = servers("silent"), servers("silent")
    engine = run(settings("musl", 900, attempts=3), [a.target, b.target], wait_s=1.2)
    rounds = [t for t, ns in musl_plan(900, 3, 2) if ns == 0]  # 0, 300, 600 (900 is not < 900)
    assert [len(server.received) for server in (a, b)] == [len(rounds)] * 2
    assert len({port for s in (a, b) for _, port, _ in s.received}) == 1
    records = sorted(rows(engine), key=lambda r: r["attempt"])
    assert [r["attempt"] for r in records] == list(range(6))
    assert {r["outcome"] for r in records} == {TIMEOUT}
    starts = [r["sent"] for r in records[::2]]
    assert all(abs(r["sent"] - start) < 5e6 for r, start in zip(records[1::2], starts, strict=True))
    assert all(within(t1 - t0, 300) for t0, t1 in zip(starts, starts[1:], strict=False)), starts
    (_, _, outcome, _, elapsed), = engine.lookups
    assert outcome == TIMEOUT and within(elapsed, 900)


def test_musl_takes_nxdomain_as_an_answer(servers):
    nx, good = servers("answer", 3), servers("answer")
    engine = run(settings("musl", 200, attempts=1), [nx.target], wait_s=0.1)
    assert engine.lookups[0][2:4] == (RCODE, 3)
    assert len(good.received) == 0


def test_musl_ignores_refused_and_resends_servfail_at_once(servers):
    refusing, failing = servers("answer", 5), servers("answer", 2)
    engine = run(settings("musl", 200, attempts=1), [refusing.target, failing.target], wait_s=0.4)
    assert len(refusing.received) == 1
    assert len(failing.received) == 3, "SERVFAIL: resent at once, twice per round"
    assert engine.lookups[0][2] == TIMEOUT


def test_raw_sends_once_to_the_first_nameserver(servers):
    silent, good = servers("silent"), servers("answer")
    engine = run(settings("raw", 100), [silent.target, good.target], wait_s=0.3)
    assert [(r["attempt"], r["outcome"]) for r in rows(engine)] == [(0, TIMEOUT)]
    assert len(good.received) == 0 and engine.lookups == []
