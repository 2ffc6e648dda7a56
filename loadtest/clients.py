"""Client models: how a lookup's queries are timed and addressed, as the C libraries do it.

Pure functions; loadtest/engine.py drives its sockets with them, and the unit tests check them
against the sources they copy. A lookup is what an application asks for (one name, one type); its
queries (attempts) are what goes on the wire.

raw
    One query to the first nameserver, one timeout, no retry (the generator's original behaviour).

glibc (resolv/res_send.c, `__res_context_send` and `send_dg`, glibc 2.26 and later; Debian 12 has 2.36)
    - Passes: `for (try = 0; try < attempts; try++) for (ns_shift = 0; ns_shift < nscount; ns_shift++)`
      sends to nameserver `ns = (ns_shift + ns_offset) % nscount`, one at a time, and waits for it.
    - `ns_offset` is 0, or with `options rotate` (and more than one nameserver) a process-wide counter
      that starts at a random value and grows by one per lookup (`nameserver_offset`): consecutive
      lookups start at consecutive nameservers. Here the counter starts at the user's number, so
      users spread over the nameservers reproducibly.
    - The wait for nameserver `ns` (its index in resolv.conf, not the pass) is
      `seconds = timeout << ns; if (ns > 0) seconds /= nscount; if (seconds <= 0) seconds = 1;`
      in whole seconds: with 5 s and three nameservers 5, 3 and 6 s; with two, 5 and 5 s.
    - ICMP port unreachable (`ECONNREFUSED` from the connected socket, or POLLERR), a failed send,
      and an answer with RCODE SERVFAIL, NOTIMP or REFUSED close every socket of the lookup
      (`__res_iclose`) and move on to the next nameserver at once. Any other answer ends the lookup.
    - Sockets: one connected UDP socket per nameserver, opened on first use within the lookup and
      kept after a timeout, so a later pass to the same nameserver sends from the same source port
      (and with the same query ID); all are closed when the lookup ends (no RES_STAYOPEN).
    - Limits from res_init: attempts <= 5 (RES_MAXRETRY), timeout <= 30 s (RES_MAXRETRANS), at most
      3 nameservers (MAXNS).
    Not modelled: A and AAAA sent together from one socket (getaddrinfo's default; each lookup here is
    one name and type, as with `options single-request` for one family), TCP (`use-vc`, or after a
    truncated answer), and a late answer or ICMP error for an earlier pass arriving while glibc waits
    on another nameserver's socket (dropped here; glibc would read it when it comes back to that
    nameserver).
    A fractional timeout (resolv.conf takes whole seconds) is computed the same way in milliseconds.

musl (src/network/res_msend.c, `__res_msend_rc`, musl 1.2.4 and later)
    - One unconnected UDP socket per lookup (so ICMP errors are never seen): the query goes to every
      nameserver at once, and again to every nameserver each `retry_interval = timeout / attempts` ms
      (integer ms) after the previous round, while less than `timeout` has passed since the first.
    - The first answer with RCODE NOERROR or NXDOMAIN ends the lookup. SERVFAIL is resent at once to
      the nameserver that sent it (at most twice per round for one query); every other RCODE (e.g.
      REFUSED) is ignored. After `timeout` without such an answer the lookup fails.
    - Limits from resolvconf.c: attempts <= 10, timeout <= 60 s, at most 3 nameservers.
    Not modelled: A and AAAA as two queries of one lookup, TCP after a truncated answer.

In both, an answer with the RCODE the query mix expects (`--dns-names NAME:TYPE:RCODE`) ends the
lookup as ok, so a mix that expects REFUSED does not make glibc or musl move on.

socket_mode = reuse replaces each model's per-lookup sockets with long-lived ones, one per user
(and per nameserver for raw and glibc), as a busy client or a long-running process holds them; the
source port then never changes (the setting that exposes stale IPVS flows).
"""

from __future__ import annotations

NS_PER_MS = 1_000_000
GLIBC_NEXT_SERVER_RCODES = frozenset((2, 4, 5))  # SERVFAIL, NOTIMP, REFUSED
MUSL_ACCEPT_RCODES = frozenset((0, 3))  # NOERROR, NXDOMAIN
MUSL_SERVFAIL = 2
MUSL_SERVFAIL_RESENDS = 2  # per round and query: `servfail_retry = 2 * nqueries`


def glibc_timeouts_ms(timeout_ms: float, nscount: int) -> tuple[float, ...]:
    """The wait for an answer from nameserver 0..nscount-1 (send_dg's `seconds`), in ms.

    Whole-second timeouts use glibc's arithmetic in seconds; others the same arithmetic in ms.
    """
    unit = 1000 if timeout_ms % 1000 == 0 else 1
    base = int(timeout_ms // unit)
    out = []
    for ns in range(nscount):
        value = base << ns
        if ns > 0:
            value //= nscount
        out.append(float(max(value, 1) * unit))
    return tuple(out)


def glibc_server(ns_shift: int, ns_offset: int, nscount: int) -> int:
    """The nameserver index of a pass's `ns_shift`-th send."""
    ns = ns_shift + ns_offset
    return ns - nscount if ns >= nscount else ns


def glibc_next(try_: int, ns_shift: int, attempts: int, nscount: int) -> tuple[int, int] | None:
    """The (try, ns_shift) after one that failed, or None when every pass is used up."""
    ns_shift += 1
    if ns_shift == nscount:
        try_, ns_shift = try_ + 1, 0
    return None if try_ >= attempts else (try_, ns_shift)


def glibc_offset(counter: int, nscount: int, rotate: bool) -> int:
    """`nameserver_offset`: 0 without rotate, else the lookup counter modulo the nameserver count."""
    return counter % nscount if rotate and nscount > 1 else 0


def glibc_plan(timeout_ms: float, attempts: int, nscount: int, ns_offset: int = 0) -> list[tuple[float, int]]:
    """(send time in ms from the lookup's start, nameserver) of every send when none answers."""
    waits = glibc_timeouts_ms(timeout_ms, nscount)
    plan, at, step = [], 0.0, (0, 0)
    while step is not None:
        server = glibc_server(step[1], ns_offset, nscount)
        plan.append((at, server))
        at += waits[server]
        step = glibc_next(*step, attempts, nscount)
    return plan


def musl_retry_interval_ms(timeout_ms: float, attempts: int) -> int:
    """`retry_interval = timeout / attempts`, integer milliseconds."""
    return int(timeout_ms) // attempts


def musl_plan(timeout_ms: float, attempts: int, nscount: int) -> list[tuple[float, int]]:
    """(send time in ms from the lookup's start, nameserver) of every send when none answers and
    every round goes out on time: rounds at k * retry_interval while that is < timeout."""
    interval = musl_retry_interval_ms(timeout_ms, attempts)
    plan, at = [], 0
    while at < int(timeout_ms):
        plan += [(float(at), ns) for ns in range(nscount)]
        at += interval
    return plan


def scan_interval_s(client: str, timeout_ms: float, attempts: int, nscount: int) -> float:
    """How often the engine checks its timers: 1/20 of the shortest one, between 1 and 10 ms."""
    if client == "glibc":
        shortest = min(glibc_timeouts_ms(timeout_ms, nscount))
    elif client == "musl":
        shortest = max(1, musl_retry_interval_ms(timeout_ms, attempts))
    else:
        shortest = timeout_ms
    return min(0.01, max(0.001, shortest / 1000 / 20))
