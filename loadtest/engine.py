"""The hot path of one DNS user: queries in flight on raw non-blocking sockets, driven by gevent.

One `epoll` per user holds its sockets; a single gevent io watcher on that epoll wakes the user's
reply handler inside the hub, which reads a bounded number of replies per wakeup, matches them to
pending queries by ID and reads only the header (plus the TXT answer of who.lab.test). A hub timer
scans the pending queries for timeouts while there are any; its interval is the timeout resolution.
Finished queries go to `Engine.done` as plain tuples; the caller drains them into records and
Locust events.

Models: closed (rate 0: keep `window` queries in flight, refilled as answers arrive) or open
(`run_open`: send on a fixed schedule, catching up after late wakeups so the achieved rate holds).
UDP socket modes: `fresh` opens a new socket (new source port) per query attempt, `reuse` one per
user. TCP is one length-prefixed, pipelined connection per user, reconnected after a failure.
"""

from __future__ import annotations

import _socket
import errno
import time
from collections.abc import Callable, Sequence

import gevent
from gevent import monkey

from loadtest.options import Settings
from loadtest.records import ERROR, NO_RCODE, OK, RCODE, TIMEOUT
from loadtest.wire import first_txt, reply_header

epoll = monkey.get_original("select", "epoll")
EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x001, 0x004, 0x008, 0x010
READS_PER_WAKEUP = 256
FULL_WINDOW_BACKOFF_S = 0.001  # open model with a full window: look again this soon
UDP, TCP = 0, 1
monotonic_ns = time.monotonic_ns

# A pending query: [first send ns, last send ns, query index, proto, socket, attempts, source port]
FIRST, LAST, QUERY, PROTO, SOCK, ATTEMPTS, PORT = range(7)
# A finished query in Engine.done: (first send ns (monotonic), latency ns from the first send or -1
# without an answer, source port, query index, resolver, outcome, rcode, proto)


class Engine:
    """Sends a user's queries and collects what became of them."""

    def __init__(self, settings: Settings, target: tuple[str, int], wires: Sequence[bytes],
                 expect: Sequence[int], schedule: Sequence[tuple[int, int]], start: int = 0) -> None:
        self.done: list[tuple] = []
        self._target = target
        self._window = settings.window
        self._fresh = settings.socket_mode == "fresh"
        self._retries = settings.retries
        self._timeout_ns = int(settings.timeout_ms * 1e6)
        self._tails = [wire[2:] for wire in wires]
        self._qlens = [len(wire) for wire in wires]
        self._expect = list(expect)
        self._schedule = list(schedule)
        self._turn = start % len(self._schedule)
        self._next_id = start * 7919 & 0xFFFF
        self._pending: dict[int, list] = {}
        self._socks: dict[int, list] = {}  # fd -> [socket, qid of its query (fresh) or None]
        self._ep = epoll()
        self._udp = None if self._fresh else self._open_udp()
        self._udp_port = 0 if self._udp is None else self._udp.getsockname()[1]
        self._tcp = None
        self._tcp_fd = -1
        self._tcp_port = 0
        self._tcp_connected = False
        self._tcp_out = bytearray()
        self._tcp_in = bytearray()
        self._closed_model = settings.rate == 0
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
        """Stop and close everything. Queries still in flight are dropped (neither done nor recorded)."""
        self._watcher.stop()
        self._timer.stop()
        self._pending.clear()
        for sock, _ in self._socks.values():
            sock.close()
        self._socks.clear()
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        self._ep.close()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def run_open(self, rate: float, keep_going: Callable[[], bool], drain: Callable[[], None],
                 drain_every_s: float = 0.05) -> None:
        """Send at `rate` queries/s on a fixed schedule until `keep_going()` is false.

        A full window (the generator or the server saturated) delays sends; they go out as soon as
        answers or timeouts free slots, so the lateness shows in the records' send times.
        """
        interval = 1e9 / rate
        backoff_ns = FULL_WINDOW_BACKOFF_S * 1e9
        due = float(monotonic_ns())
        next_drain = due
        loop = self._loop
        while keep_going():
            now = monotonic_ns()
            while due <= now and len(self._pending) < self._window:
                self.send_next()
                due += interval
            if now >= next_drain:
                drain()
                next_drain = now + drain_every_s * 1e9
            loop.update_now()
            wake = due if len(self._pending) < self._window else monotonic_ns() + backoff_ns
            wait = (min(wake, next_drain) - monotonic_ns()) / 1e9
            gevent.sleep(wait if wait > 0 else 0)

    # -- sending --------------------------------------------------------------------------------

    def send_next(self) -> None:
        """Send the next query of the schedule."""
        query, proto = self._schedule[self._turn]
        self._turn = (self._turn + 1) % len(self._schedule)
        now = monotonic_ns()
        self._send([now, now, query, proto, None, 0, 0])

    def fill(self) -> None:
        """Closed model: top the window up (at most one window's worth of sends per call)."""
        for _ in range(self._window - len(self._pending)):
            self.send_next()

    def _new_id(self) -> int:
        qid = self._next_id
        while qid in self._pending:
            qid = (qid + 1) & 0xFFFF
        self._next_id = (qid + 1) & 0xFFFF
        return qid

    def _send(self, entry: list) -> None:
        qid = self._new_id()
        packet = qid.to_bytes(2, "big") + self._tails[entry[QUERY]]
        entry[LAST] = monotonic_ns()
        try:
            if entry[PROTO] == UDP:
                self._send_udp(qid, packet, entry)
            else:
                self._send_tcp(packet, entry)
        except OSError:
            self._finish(entry, ERROR, NO_RCODE, "")
            return
        self._pending[qid] = entry
        if not self._timer.active:  # the timeout scan runs only while queries are pending
            self._timer.start(self._on_scan)

    def _open_udp(self):
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.connect(self._target)
        except OSError:
            sock.close()
            raise
        fd = sock.fileno()
        self._socks[fd] = [sock, None]
        self._ep.register(fd, EPOLLIN)
        return sock

    def _send_udp(self, qid: int, packet: bytes, entry: list) -> None:
        if self._fresh:
            sock = self._open_udp()
            self._socks[sock.fileno()][1] = qid
            entry[PORT] = sock.getsockname()[1]
        else:
            sock = self._udp
            entry[PORT] = self._udp_port
        entry[SOCK] = sock
        sock.send(packet)

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
        code = sock.connect_ex(self._target)
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
        for fd, events in self._ep.poll(0, 64):
            if fd == self._tcp_fd:
                self._on_tcp(events)
                continue
            slot = self._socks.get(fd)
            if slot is None:
                continue
            sock = slot[0]
            while budget > 0:
                budget -= 1
                try:
                    reply = sock.recv(4096)
                except BlockingIOError:
                    break
                except OSError:  # e.g. ConnectionRefusedError: ICMP port unreachable
                    self._refused(sock, slot[1])
                    break
                self._answer(reply, sock)
                if self._fresh:
                    break
            if budget <= 0:
                break
        if self._closed_model:
            self.fill()

    def _answer(self, reply: bytes, sock) -> None:
        try:
            qid, rcode = reply_header(reply)
        except ValueError:
            return
        entry = self._pending.get(qid)
        if entry is None or entry[SOCK] is not sock:
            return
        del self._pending[qid]
        query = entry[QUERY]
        resolver = first_txt(reply, self._qlens[query]) if query == 0 and rcode == 0 else ""
        self._finish(entry, OK if rcode == self._expect[query] else RCODE, rcode, resolver)

    def _finish(self, entry: list, outcome: int, rcode: int, resolver: str) -> None:
        latency = monotonic_ns() - entry[FIRST] if outcome in (OK, RCODE) else -1
        self.done.append((entry[FIRST], latency, entry[PORT], entry[QUERY], resolver, outcome, rcode,
                          entry[PROTO]))
        sock = entry[SOCK]
        if self._fresh and entry[PROTO] == UDP and sock is not None:
            self._drop_socket(sock)

    def _drop_socket(self, sock) -> None:
        fd = sock.fileno()
        if fd >= 0 and self._socks.pop(fd, None) is not None:
            sock.close()

    def _refused(self, sock, qid: int | None) -> None:
        """An ICMP error on a UDP socket: its query (fresh) or its oldest query (reuse) failed."""
        if qid is None:
            qid = next((k for k, e in self._pending.items() if e[SOCK] is sock), None)
        entry = self._pending.pop(qid, None) if qid is not None else None
        if entry is not None:
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
        lost = [qid for qid, e in self._pending.items() if e[SOCK] is sock]
        for qid in lost:
            self._finish(self._pending.pop(qid), ERROR, NO_RCODE, "")
        self._ep.unregister(self._tcp_fd)
        sock.close()
        self._tcp, self._tcp_fd, self._tcp_connected = None, -1, False

    # -- timeouts -------------------------------------------------------------------------------

    def _on_scan(self) -> None:
        self._on_ready()  # replies already waiting (e.g. after the loop was busy) are not timeouts
        limit = monotonic_ns() - self._timeout_ns
        expired = []
        for qid, entry in self._pending.items():
            if entry[LAST] > limit:
                break
            expired.append(qid)
        for qid in expired:
            entry = self._pending.pop(qid)
            if entry[ATTEMPTS] < self._retries:
                if self._fresh and entry[PROTO] == UDP:
                    self._drop_socket(entry[SOCK])
                entry[ATTEMPTS] += 1
                self._send(entry)
            else:
                self._finish(entry, TIMEOUT, NO_RCODE, "")
        if self._closed_model and expired:
            self.fill()
        if not self._pending:
            self._timer.stop()
