"""The glibc and musl client models on the engine: how a lookup goes on after each of its queries.

`ClientModels` is a part of `loadtest.engine.Engine` (a mixin; its state is set in `Engine.__init__`).
The timing and addressing rules are the pure functions of loadtest/clients.py; this module applies
them to the engine's sockets and pending queries.

glibc: the first attempt goes out as cheaply as a raw query (no `Lookup`); only when it fails does
the lookup get its retry state, then one attempt at a time, to the nameserver its (try, ns_shift)
names. musl: every round goes to every nameserver from the lookup's one socket; the engine's timer
sends the due rounds and fails lookups past their timeout (`_musl_timers`).
"""

from __future__ import annotations

import time

from loadtest import clients
from loadtest.inflight import FIRST, LID, PORT, QID, QUERY, SENT, SERVER, SOCK, UDP, Lookup
from loadtest.records import ERROR, NO_RCODE, OK, RCODE, TIMEOUT

monotonic_ns = time.monotonic_ns


class ClientModels:
    """The retry schedules of the glibc and musl lookups in flight."""

    def _end(self, lookup: Lookup, outcome: int, rcode: int, now: int) -> None:
        lookup.done = True
        self._active -= 1
        self.lookups.append((lookup.query, UDP, outcome, rcode, now - lookup.first))
        if self._client == "glibc":
            self._close_lookup_sockets(lookup)

    # -- glibc ------------------------------------------------------------------------------------

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

    def _close_lookup_sockets(self, lookup: Lookup) -> None:
        if self._fresh:
            for i, held in enumerate(lookup.socks):
                if held is not None:
                    self._drop_socket(held[0])
                    lookup.socks[i] = None

    # -- musl -------------------------------------------------------------------------------------

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

    def _release_musl(self, lookup: Lookup) -> None:
        """A finished musl lookup with nothing in flight: close its socket (fresh)."""
        if self._fresh and lookup.sock is not None:
            self._drop_socket(lookup.sock)
            lookup.sock = None

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
