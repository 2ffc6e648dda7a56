"""The hot path of one DNS user: lookups in flight on raw non-blocking sockets, driven by gevent.

One `epoll` per user holds its sockets; a single gevent io watcher on that epoll wakes the user's
reply handler inside the hub, which reads a bounded number of replies per wakeup, matches them to
pending queries by ID and reads only the header (plus the TXT answer of who.lab.test). A hub timer
checks the timers (query timeouts, musl's resend rounds and lookup deadlines) while any are
pending; its interval is the timeout resolution.

Each lookup follows a client model (loadtest/clients.py: raw, glibc or musl) and sends one or more
queries (attempts). Finished queries go to `Engine.done` and, for glibc and musl, finished lookups
to `Engine.lookups`, as plain tuples; the caller drains them into records and Locust events.

Load models: closed (rate 0: keep `window` lookups in flight, refilled as they finish) or open
(`run_open`: start lookups on a fixed schedule, catching up after late wakeups so the rate holds).
TCP (raw only) is one length-prefixed, pipelined connection per user, reconnected after a failure.
"""

from __future__ import annotations

import _socket
import errno
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence

import gevent
from gevent import monkey

from loadtest import clients
from loadtest.options import Settings
from loadtest.records import ERROR, NO_RCODE, OK, RCODE, TIMEOUT
from loadtest.wire import first_txt, reply_header

epoll = monkey.get_original("select", "epoll")
EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x001, 0x004, 0x008, 0x010
READS_PER_WAKEUP = 256
FULL_WINDOW_BACKOFF_S = 0.001  # open model with a full window: look again this soon
BURST_CHECK = 32  # open model, behind schedule: look at the clock after this many starts
UDP, TCP = 0, 1
NS_PER_MS = 1_000_000
monotonic_ns = time.monotonic_ns

# A query on the wire (one attempt of a lookup), a list for speed:
# [send ns, query index, proto, socket, source port, lookup id, attempt, its Lookup (None: raw; FIRST: a
#  glibc first attempt, whose Lookup is made only if it fails), nameserver index, query ID, timer class]
SENT, QUERY, PROTO, SOCK, PORT, LID, ATTEMPT, LOOKUP, SERVER, QID, CLASS = range(11)
FIRST = True
# Engine.done: (send ns (monotonic), latency ns from that send or -1 without an answer, source port, query
# index, resolver, outcome, rcode, proto, lookup id, attempt), one per query.
# Engine.lookups (glibc, musl): (query index, proto, outcome, rcode, ns from the lookup's start to its end).


class Lookup:
    """A glibc or musl lookup in progress."""

    __slots__ = ("lid", "first", "query", "qid", "sent", "try_", "shift", "offset", "socks", "entry",
                 "done", "sock", "port", "inflight", "entries", "budget")

    def __init__(self, lid: int, first: int, query: int) -> None:
        self.lid, self.first, self.query = lid, first, query
        self.sent = 0  # queries sent so far: the next one's attempt number
        self.done = False
        self.entry: list | None = None  # glibc: the attempt in flight
        self.sock = None  # musl: the lookup's socket


class Engine:
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

    def _start_glibc(self, query: int, proto: int, lid: int) -> None:
        """The first attempt goes to the rotate offset's nameserver. It carries no `Lookup` (LOOKUP is
        FIRST) until it fails: most lookups end with their first answer, as cheaply as a raw query."""
        server = 0
        if self._rotate and self._nscount > 1:
            server = clients.glibc_offset(self._lookup_counter, self._nscount, True)
            self._lookup_counter += 1
        entry = [0, query, UDP, None, 0, lid, 0, FIRST, server, self._new_id(), self._server_class[server]]
        self._send_udp(entry, server)

    def _glibc_lookup(self, entry: list) -> Lookup:
        """The retry state of a glibc lookup whose first attempt failed."""
        lookup = Lookup(entry[LID], entry[SENT], entry[QUERY])
        lookup.try_, lookup.shift, lookup.offset, lookup.qid = 0, 0, entry[SERVER], entry[QID]
        lookup.sent, lookup.entry = 1, entry
        lookup.socks = [None] * self._nscount
        if self._fresh and entry[SOCK] is not None and entry[SOCK].fileno() >= 0:
            lookup.socks[entry[SERVER]] = entry[SOCK], entry[PORT]
            self._socks[entry[SOCK].fileno()][1] = lookup
        return lookup

    def _glibc_send(self, lookup: Lookup) -> None:
        """Send the lookup's next attempt to the nameserver its (try, ns_shift) names."""
        server = clients.glibc_server(lookup.shift, lookup.offset, self._nscount)
        entry = [0, lookup.query, UDP, None, 0, lookup.lid, lookup.sent, lookup, server, lookup.qid,
                 self._server_class[server]]
        lookup.sent += 1
        lookup.entry = entry
        try:
            if not self._fresh:
                entry[SOCK], entry[PORT] = self._shared[server]
            elif lookup.socks[server] is not None:
                entry[SOCK], entry[PORT] = lookup.socks[server]
            else:
                held = self._open_udp(self._targets[server], lookup)
                lookup.socks[server] = held
                entry[SOCK], entry[PORT] = held
        except OSError:
            entry[SENT] = monotonic_ns()
            self._finish(entry, ERROR, NO_RCODE, "")
            return
        self._transmit(entry)

    def _start_musl(self, query: int, proto: int, lid: int) -> None:
        lookup = Lookup(lid, monotonic_ns(), query)
        lookup.inflight, lookup.entries = 0, []
        try:
            lookup.sock, lookup.port = self._open_udp(None, lookup) if self._fresh else self._shared[0]
        except OSError:  # no socket, no lookup: musl's res_msend returns -1 before sending
            entry = [monotonic_ns(), query, UDP, None, 0, lid, 0, lookup, 0, 0, 0]
            lookup.inflight = 1
            self._finish(entry, ERROR, NO_RCODE, "")
            if not lookup.done:
                self._end(lookup, ERROR, NO_RCODE, monotonic_ns())
            return
        self._deadlines.append(lookup)
        self._musl_round(lookup)
        self._rounds.append((lookup.first + self._musl_interval_ns, lookup))
        if not self._timer.active:
            self._timer.start(self._on_scan)

    def _musl_round(self, lookup: Lookup) -> None:
        lookup.budget = clients.MUSL_SERVFAIL_RESENDS
        for server in range(self._nscount):
            if lookup.done:
                break
            self._musl_send(lookup, server)

    def _musl_send(self, lookup: Lookup, server: int) -> None:
        entry = [0, lookup.query, UDP, lookup.sock, lookup.port, lookup.lid, lookup.sent, lookup, server,
                 self._new_id(), 0]
        lookup.sent += 1
        lookup.inflight += 1
        lookup.entries.append(entry)
        self._transmit(entry, self._targets[server])

    def _open_udp(self, target: tuple[str, int] | None, owner) -> tuple:
        """A non-blocking UDP socket, connected to `target` (None: bound, unconnected); (socket, port)."""
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            if target is None:
                sock.bind(("0.0.0.0", 0))
            else:
                sock.connect(target)
        except OSError:
            sock.close()
            raise
        fd = sock.fileno()
        self._socks[fd] = [sock, owner, target is not None]
        self._ep.register(fd, EPOLLIN)
        return sock, sock.getsockname()[1]

    def _send_tcp(self, packet: bytes, entry: list) -> None:
        if self._tcp is None:
            self._connect_tcp()
        entry[SOCK] = self._tcp
        entry[PORT] = self._tcp_port
        self._tcp_out += len(packet).to_bytes(2, "big") + packet
        if self._tcp_connected:
            self._flush_tcp()

    def _connect_tcp(self) -> None:
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        code = sock.connect_ex(self._targets[0])
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, errno.errorcode.get(code, "connect failed"))
        self._tcp, self._tcp_fd = sock, sock.fileno()
        self._tcp_port = sock.getsockname()[1]
        self._tcp_connected = False
        self._tcp_out.clear()
        self._tcp_in.clear()
        self._ep.register(self._tcp_fd, EPOLLIN | EPOLLOUT)

    def _flush_tcp(self) -> None:
        sent = self._tcp.send(self._tcp_out)
        del self._tcp_out[:sent]
        self._ep.modify(self._tcp_fd, EPOLLIN | (EPOLLOUT if self._tcp_out else 0))

    # -- receiving ------------------------------------------------------------------------------

    def _on_ready(self) -> None:
        budget = READS_PER_WAKEUP
        socks = self._socks
        for fd, events in self._ep.poll(0, 64):
            if fd == self._tcp_fd:
                self._on_tcp(events)
                continue
            slot = socks.get(fd)
            if slot is None:
                continue
            sock, connected = slot[0], slot[2]
            while budget > 0:
                budget -= 1
                try:
                    if connected:
                        reply, source = sock.recv(4096), None
                    else:
                        reply, source = sock.recvfrom(4096)
                except BlockingIOError:
                    break
                except OSError:  # e.g. ConnectionRefusedError: ICMP port unreachable
                    self._refused(sock, slot[1])  # its owner now (a glibc retry may have changed it)
                    break
                self._answer(reply, sock, source)
                if socks.get(fd) is not slot:  # closed when its lookup ended
                    break
            if budget <= 0:
                break
        if self._closed_model:
            self.fill()

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

    def _glibc_after(self, lookup: Lookup, outcome: int, rcode: int, now: int) -> None:
        """A glibc attempt failed or was answered: end the lookup, or send to the next nameserver."""
        if outcome == OK or (outcome == RCODE and rcode not in clients.GLIBC_NEXT_SERVER_RCODES):
            self._end(lookup, outcome, rcode, now)
            return
        if outcome != TIMEOUT:  # __res_iclose: every socket of the lookup is closed
            self._close_lookup_sockets(lookup)
        step = clients.glibc_next(lookup.try_, lookup.shift, self._attempts, self._nscount)
        if step is None:
            self._end(lookup, outcome, rcode, now)
            return
        lookup.try_, lookup.shift = step
        self._glibc_send(lookup)

    def _musl_after(self, lookup: Lookup, entry: list, outcome: int, rcode: int, now: int) -> None:
        lookup.inflight -= 1
        if not lookup.done and rcode != NO_RCODE:
            if outcome == OK or rcode in clients.MUSL_ACCEPT_RCODES:
                self._end(lookup, outcome, rcode, now)
            elif rcode == clients.MUSL_SERVFAIL and lookup.budget > 0:
                lookup.budget -= 1
                self._musl_send(lookup, entry[SERVER])
        if lookup.done and lookup.inflight == 0:
            self._release_musl(lookup)

    def _end(self, lookup: Lookup, outcome: int, rcode: int, now: int) -> None:
        lookup.done = True
        self._active -= 1
        self.lookups.append((lookup.query, UDP, outcome, rcode, now - lookup.first))
        if self._client == "glibc":
            self._close_lookup_sockets(lookup)

    def _close_lookup_sockets(self, lookup: Lookup) -> None:
        if self._fresh:
            for i, held in enumerate(lookup.socks):
                if held is not None:
                    self._drop_socket(held[0])
                    lookup.socks[i] = None

    def _release_musl(self, lookup: Lookup) -> None:
        """A finished musl lookup with nothing in flight: close its socket (fresh)."""
        if self._fresh and lookup.sock is not None:
            self._drop_socket(lookup.sock)
            lookup.sock = None

    def _drop_socket(self, sock) -> None:
        fd = sock.fileno()
        if fd >= 0 and self._socks.pop(fd, None) is not None:
            sock.close()

    def _pending_on(self, sock) -> list | None:
        """The oldest pending query sent on `sock`."""
        for pending in self._classes:
            for entry in pending.values():
                if entry[SOCK] is sock:
                    return entry
        return None

    def _refused(self, sock, owner) -> None:
        """An ICMP error on a connected UDP socket: the query waiting on it failed (for a shared
        socket, its oldest). An error on a glibc socket it is not waiting on is dropped."""
        if owner is None:
            entry = self._pending_on(sock)
        elif isinstance(owner, Lookup):
            entry = owner.entry if owner.entry is not None and owner.entry[SOCK] is sock else None
        else:
            entry = owner
        if entry is not None and self._classes[entry[CLASS]].get(entry[QID]) is entry:
            del self._classes[entry[CLASS]][entry[QID]]
            self._finish(entry, ERROR, NO_RCODE, "")

    def _on_tcp(self, events: int) -> None:
        sock = self._tcp
        try:
            if not self._tcp_connected and events & (EPOLLOUT | EPOLLERR | EPOLLHUP):
                code = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
                if code:
                    raise OSError(code, "connect failed")
                self._tcp_connected = True
            if events & EPOLLOUT:
                self._flush_tcp()
            if events & (EPOLLIN | EPOLLHUP | EPOLLERR):
                data = sock.recv(65536)
                if not data:
                    raise ConnectionResetError("closed by the server")
                self._tcp_in += data
                self._read_frames(sock)
        except BlockingIOError:
            return
        except OSError:
            self._tcp_failed()

    def _read_frames(self, sock) -> None:
        buffer = self._tcp_in
        offset = 0
        while len(buffer) - offset >= 2:
            size = int.from_bytes(buffer[offset : offset + 2], "big")
            if len(buffer) - offset - 2 < size:
                break
            self._answer(bytes(buffer[offset + 2 : offset + 2 + size]), sock)
            offset += 2 + size
        del buffer[:offset]

    def _tcp_failed(self) -> None:
        """The TCP connection broke: its queries failed; the next TCP query reconnects."""
        sock = self._tcp
        lost = [entry for pending in self._classes for entry in pending.values() if entry[SOCK] is sock]
        for entry in lost:
            del self._classes[entry[CLASS]][entry[QID]]
            self._finish(entry, ERROR, NO_RCODE, "")
        self._ep.unregister(self._tcp_fd)
        sock.close()
        self._tcp, self._tcp_fd, self._tcp_connected = None, -1, False

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

    def _musl_timers(self, now: int) -> None:
        """Lookups past their timeout fail (their queries time out); due rounds go out."""
        deadlines, pending = self._deadlines, self._pending
        while deadlines and deadlines[0].first + self._musl_timeout_ns <= now:
            lookup = deadlines.popleft()
            for entry in lookup.entries:
                if pending.get(entry[QID]) is entry:
                    del pending[entry[QID]]
                    self._finish(entry, TIMEOUT, NO_RCODE, "")
            if not lookup.done:
                self._end(lookup, TIMEOUT, NO_RCODE, now)
            self._release_musl(lookup)
        rounds = self._rounds
        while rounds and rounds[0][0] <= now:
            _, lookup = rounds.popleft()
            if lookup.done or now - lookup.first >= self._musl_timeout_ns:
                continue
            self._musl_round(lookup)
            rounds.append((now + self._musl_interval_ns, lookup))
