"""The hot path of one DNS user: lookups in flight on raw non-blocking sockets, driven by gevent.

`Engine` keeps a user's lookups in flight and collects what became of them. Its parts:
loadtest/transport.py (the sockets on one epoll, watched by one gevent io watcher, and reading the
replies), loadtest/retries.py (the glibc and musl client models on those sockets), loadtest/inflight.py
(the layout of a query in flight and of the results). Here: starting lookups, matching replies to
pending queries by ID (reading only the header, plus the TXT answer of who.lab.test), and a hub timer
that checks the timers (query timeouts, musl's resend rounds and lookup deadlines) while any are
pending; its interval is the timeout resolution.

Each lookup follows a client model (loadtest/clients.py: raw, glibc or musl) and sends one or more
queries (attempts). Finished queries go to `Engine.done` and, for glibc and musl, finished lookups
to `Engine.lookups`, as plain tuples; the caller drains them into records and Locust events.

Load models: closed (rate 0: keep `window` lookups in flight, refilled as they finish) or open
(`run_open`: start lookups on a fixed schedule, catching up after late wakeups so the rate holds).
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Callable, Sequence

import gevent
from gevent import monkey

from loadtest import clients
from loadtest.inflight import (
    ATTEMPT,
    CLASS,
    FIRST,
    LID,
    LOOKUP,
    NS_PER_MS,
    PORT,
    PROTO,
    QID,
    QUERY,
    SENT,
    SERVER,
    SOCK,
    TCP,
    UDP,
    Lookup,
)
from loadtest.options import Settings
from loadtest.records import ERROR, NO_RCODE, OK, RCODE, TIMEOUT
from loadtest.retries import ClientModels
from loadtest.transport import Transport
from loadtest.wire import first_txt, reply_header

epoll = monkey.get_original("select", "epoll")
FULL_WINDOW_BACKOFF_S = 0.001  # open model with a full window: look again this soon
BURST_CHECK = 32  # open model, behind schedule: look at the clock after this many starts
monotonic_ns = time.monotonic_ns


class Engine(ClientModels, Transport):
    """Sends a user's lookups and collects what became of them."""

    def __init__(self, settings: Settings, targets: Sequence[tuple[str, int]], wires: Sequence[bytes],
                 expect: Sequence[int], schedule: Sequence[tuple[int, int]], start: int = 0) -> None:
        self.done: list[tuple] = []
        self.lookups: list[tuple] = []
        self._client = settings.client
        self._targets = list(targets[:1] if settings.client == "raw" else targets)
        self._nscount = len(self._targets)
        self._window = settings.window
        self._fresh = settings.socket_mode == "fresh"
        self._attempts = settings.attempts
        self._rotate = settings.rotate
        self._tails = [wire[2:] for wire in wires]
        self._qlens = [len(wire) for wire in wires]
        self._expect = list(expect)
        self._schedule = list(schedule)
        self._turn = start % len(self._schedule)
        self._lookup_counter = start  # glibc's rotate offset
        self._next_lid = 0
        self._next_id = start * 7919 & 0xFFFF
        self._active = 0
        # Pending queries by ID, one dict per timeout: entries of a class time out in insertion order.
        if self._client == "glibc":
            waits = clients.glibc_timeouts_ms(settings.timeout_ms, self._nscount)
            distinct = sorted(set(waits))
            self._server_class = [distinct.index(w) for w in waits]
            self._class_timeout: list[int | None] = [int(w * NS_PER_MS) for w in distinct]
        else:
            self._server_class = [0] * self._nscount
            self._class_timeout = [None if self._client == "musl" else int(settings.timeout_ms * NS_PER_MS)]
        self._classes: list[dict[int, list]] = [{} for _ in self._class_timeout]
        self._pending = self._classes[0]
        self._single = len(self._classes) == 1
        self._musl_timeout_ns = int(settings.timeout_ms) * NS_PER_MS
        interval_ms = clients.musl_retry_interval_ms(settings.timeout_ms, settings.attempts)
        self._musl_interval_ns = interval_ms * NS_PER_MS
        self._rounds: deque[tuple[int, Lookup]] = deque()  # musl: (next round due, lookup), due in order
        self._deadlines: deque[Lookup] = deque()  # musl: lookups in start order (= deadline order)
        self._socks: dict[int, list] = {}  # fd -> [socket, owner (raw entry / Lookup) or None, connected]
        self._ep = epoll()
        self._shared: list = []  # reuse: [(socket, port)] per nameserver (musl: one unconnected)
        if not self._fresh:
            if self._client == "musl":
                self._shared = [self._open_udp(None, None)]
            else:
                self._shared = [self._open_udp(target, None) for target in self._targets]
        self._tcp = None
        self._tcp_fd = -1
        self._tcp_port = 0
        self._tcp_connected = False
        self._tcp_out = bytearray()
        self._tcp_in = bytearray()
        self._closed_model = settings.rate == 0
        starts = {"raw": self._start_raw, "glibc": self._start_glibc, "musl": self._start_musl}
        self._start = starts[self._client]
        loop = gevent.get_hub().loop
        self._loop = loop
        self._watcher = loop.io(self._ep.fileno(), 1)
        self._timer = loop.timer(settings.scan_interval_s, settings.scan_interval_s)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start watching replies; in the closed model, fill the window."""
        self._watcher.start(self._on_ready)
        if self._closed_model:
            self.fill()

    def close(self) -> None:
        """Stop and close everything. Lookups still in flight are dropped (neither done nor recorded)."""
        self._watcher.stop()
        self._timer.stop()
        for pending in self._classes:
            pending.clear()
        self._rounds.clear()
        self._deadlines.clear()
        for sock, _, _ in self._socks.values():
            sock.close()
        self._socks.clear()
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        self._ep.close()

    @property
    def in_flight(self) -> int:
        """Lookups started and not finished."""
        return self._active

    def run_open(self, rate: float, keep_going: Callable[[], bool], drain: Callable[[], None],
                 drain_every_s: float = 0.05) -> None:
        """Start `rate` lookups/s on a fixed schedule until `keep_going()` is false.

        A full window (the generator or the server saturated) delays starts; they go out as soon as
        lookups finish, so the lateness shows in the records' send times.
        """
        interval = 1e9 / rate
        backoff_ns = FULL_WINDOW_BACKOFF_S * 1e9
        due = float(monotonic_ns())
        next_drain = due
        loop = self._loop
        while keep_going():
            now = monotonic_ns()
            sent, until = 0, now + drain_every_s * 1e9
            while due <= now and self._active < self._window:
                self.send_next()
                due += interval
                sent += 1
                if not sent % BURST_CHECK and monotonic_ns() > until:
                    break  # far behind: let the replies, timers and the drain run first
            if now >= next_drain:
                drain()
                next_drain = now + drain_every_s * 1e9
            loop.update_now()
            wake = due if self._active < self._window else monotonic_ns() + backoff_ns
            wait = (min(wake, next_drain) - monotonic_ns()) / 1e9
            gevent.sleep(wait if wait > 0 else 0)

    # -- starting lookups -----------------------------------------------------------------------

    def send_next(self) -> None:
        """Start the next lookup of the schedule."""
        query, proto = self._schedule[self._turn]
        self._turn = (self._turn + 1) % len(self._schedule)
        lid, self._next_lid = self._next_lid, self._next_lid + 1
        self._active += 1
        self._start(query, proto, lid)

    def fill(self) -> None:
        """Closed model: top the window up (at most one window's worth of lookups per call)."""
        for _ in range(self._window - self._active):
            self.send_next()

    def _new_id(self) -> int:
        qid = self._next_id
        if self._single:
            pending = self._pending
            while qid in pending:
                qid = (qid + 1) & 0xFFFF
        else:
            while any(qid in pending for pending in self._classes):
                qid = (qid + 1) & 0xFFFF
        self._next_id = (qid + 1) & 0xFFFF
        return qid

    def _transmit(self, entry: list, dest: tuple[str, int] | None = None) -> None:
        """Send `entry`'s query (on its socket, or the user's TCP connection) and make it pending."""
        qid = entry[QID]
        packet = qid.to_bytes(2, "big") + self._tails[entry[QUERY]]
        entry[SENT] = monotonic_ns()
        try:
            if entry[PROTO] == TCP:
                self._send_tcp(packet, entry)
            elif dest is None:
                entry[SOCK].send(packet)
            else:
                entry[SOCK].sendto(packet, dest)
        except OSError:
            self._finish(entry, ERROR, NO_RCODE, "")
            return
        self._classes[entry[CLASS]][qid] = entry
        if not self._timer.active:  # the timer runs only while something is pending
            self._timer.start(self._on_scan)

    def _start_raw(self, query: int, proto: int, lid: int) -> None:
        entry = [0, query, proto, None, 0, lid, 0, None, 0, self._new_id(), 0]
        if proto == UDP:
            self._send_udp(entry, 0)
        else:
            self._transmit(entry)

    def _send_udp(self, entry: list, server: int) -> None:
        """Send a first attempt over UDP to nameserver `server` (a fresh socket, or the shared one); a
        socket that cannot be opened ends it as an error."""
        try:
            if self._fresh:
                entry[SOCK], entry[PORT] = self._open_udp(self._targets[server], entry)
            else:
                entry[SOCK], entry[PORT] = self._shared[server]
        except OSError:
            entry[SENT] = monotonic_ns()
            self._finish(entry, ERROR, NO_RCODE, "")
            return
        self._transmit(entry)

    def _find(self, qid: int) -> list | None:
        if self._single:
            return self._pending.get(qid)
        for pending in self._classes:
            entry = pending.get(qid)
            if entry is not None:
                return entry
        return None

    def _answer(self, reply: bytes, sock, source: tuple | None = None) -> None:
        try:
            qid, rcode = reply_header(reply)
        except struct.error:
            return
        entry = self._find(qid)
        if entry is None or entry[SOCK] is not sock:
            return
        if source is not None and source != self._targets[entry[SERVER]]:
            return  # musl ignores replies from addresses it did not send to
        del self._classes[entry[CLASS]][qid]
        query = entry[QUERY]
        resolver = first_txt(reply, self._qlens[query]) if query == 0 and rcode == 0 else ""
        self._finish(entry, OK if rcode == self._expect[query] else RCODE, rcode, resolver)

    def _finish(self, entry: list, outcome: int, rcode: int, resolver: str) -> None:
        """Record a query that is no longer pending, then let its lookup's model go on."""
        now = monotonic_ns()
        latency = now - entry[SENT] if outcome in (OK, RCODE) else -1
        self.done.append((entry[SENT], latency, entry[PORT], entry[QUERY], resolver, outcome, rcode,
                          entry[PROTO], entry[LID], entry[ATTEMPT]))
        lookup = entry[LOOKUP]
        if lookup is None or (lookup is FIRST and (outcome == OK or (
                outcome == RCODE and rcode not in clients.GLIBC_NEXT_SERVER_RCODES))):
            # a raw query, or a glibc lookup answered at its first attempt: done, its socket too (fresh)
            self._active -= 1
            if lookup is FIRST:
                self.lookups.append((entry[QUERY], UDP, outcome, rcode, now - entry[SENT]))
            sock = entry[SOCK]
            if self._fresh and entry[PROTO] == UDP and sock is not None:
                self._drop_socket(sock)
        elif lookup is FIRST:
            self._glibc_after(self._glibc_lookup(entry), outcome, rcode, now)
        elif self._client == "glibc":
            self._glibc_after(lookup, outcome, rcode, now)
        else:
            self._musl_after(lookup, entry, outcome, rcode, now)

    # -- timers ---------------------------------------------------------------------------------

    def _on_scan(self) -> None:
        self._on_ready()  # replies already waiting (e.g. after the loop was busy) are not timeouts
        now = monotonic_ns()
        for pending, timeout in zip(self._classes, self._class_timeout, strict=True):
            if timeout is None:
                continue
            limit = now - timeout
            expired = []
            for entry in pending.values():
                if entry[SENT] > limit:
                    break
                expired.append(entry)
            for entry in expired:
                if pending.get(entry[QID]) is entry:
                    del pending[entry[QID]]
                    self._finish(entry, TIMEOUT, NO_RCODE, "")
        if self._deadlines:
            self._musl_timers(now)
        if self._closed_model:
            self.fill()
        if not self._deadlines and not any(self._classes):
            self._timer.stop()

