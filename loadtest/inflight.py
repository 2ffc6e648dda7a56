"""What the engine keeps for the lookups and queries in flight: the layout of a query on the wire
and the `Lookup` of the glibc and musl client models, shared by loadtest/engine.py, its socket
plumbing (loadtest/transport.py) and its client models (loadtest/retries.py).

A query on the wire (one attempt of a lookup) is a list for speed:
[send ns, query index, proto, socket, source port, lookup id, attempt, its Lookup (None: raw; FIRST: a
 glibc first attempt, whose Lookup is made only if it fails), nameserver index, query ID, timer class].

What the engine hands its caller, as plain tuples:
- `Engine.done`, one per query: (send ns (monotonic), latency ns from that send or -1 without an answer,
  source port, query index, resolver, outcome, rcode, proto, lookup id, attempt);
- `Engine.lookups` (glibc, musl), one per lookup: (query index, proto, outcome, rcode, ns from the
  lookup's start to its end).
"""

from __future__ import annotations

SENT, QUERY, PROTO, SOCK, PORT, LID, ATTEMPT, LOOKUP, SERVER, QID, CLASS = range(11)
FIRST = True
UDP, TCP = 0, 1
NS_PER_MS = 1_000_000


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
