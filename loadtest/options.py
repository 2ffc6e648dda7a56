"""The load generator's settings: Locust's --dns-* arguments (see loadtest/knobs.py) as a frozen `Settings`.

Pure apart from `resolve_target` (a DNS lookup of --host) and `check_records_dir` (a write probe).
Every problem raises `LoadError` with one line naming the argument and the fix.
"""

from __future__ import annotations

import _socket
import math
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.exception
import dns.name
import dns.rdatatype

from loadtest.clients import scan_interval_s
from loadtest.knobs import DNS_KNOBS, KnobError, flag_values, parse_address
from loadtest.knobs import add_arguments as add_arguments
from loadtest.wire import rcode_value

WHO = ("who.lab.test", "TXT")
OPTION_NAMES = tuple(knob.dest for knob in DNS_KNOBS)
SCHEDULE_LENGTH = 10_000
DEFAULT_CLOSED_WINDOW = 100
DEFAULT_OPEN_WINDOW = 10_000


class LoadError(ValueError):
    """A bad argument or environment, reported as one line before load starts."""


@dataclass(frozen=True)
class Query:
    """One query of the mix and the RCODE that counts as success for it."""

    qname: str
    qtype: str
    expect_rcode: int = 0

    @property
    def label(self) -> str:
        return f"{self.qname} {self.qtype}"


@dataclass(frozen=True)
class Settings:
    """Everything a DNS user needs, validated. `queries[0]` is always who.lab.test TXT; `nameservers`
    are (address, port) pairs, empty for --host alone."""

    rate: float
    window: int
    client: str
    timeout_ms: float
    attempts: int
    rotate: bool
    nameservers: tuple[tuple[str, int], ...]
    tcp_share: float
    who_share: float
    queries: tuple[Query, ...]
    socket_mode: str
    records: str
    port: int

    @property
    def scan_interval_s(self) -> float:
        """How often pending timers are checked: the timeout resolution."""
        return scan_interval_s(self.client, self.timeout_ms, self.attempts, len(self.nameservers) or 1)


def parse_queries(text: str) -> tuple[Query, ...]:
    """Parse --dns-names: `NAME[:TYPE[:RCODE]]` items separated by commas."""
    queries = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.split(":")
        if len(parts) > 3:
            raise LoadError(f"--dns-names: {item!r} has too many ':'; write NAME[:TYPE[:RCODE]]")
        qname, qtype, rcode = (parts + ["A", "NOERROR"][len(parts) - 1 :])[:3]
        try:
            dns.name.from_text(qname)
            qtype = dns.rdatatype.to_text(dns.rdatatype.from_text(qtype.upper()))
            expect = rcode_value(rcode)
        except (ValueError, dns.exception.DNSException) as exc:
            raise LoadError(f"--dns-names: {item!r}: {exc}; write NAME[:TYPE[:RCODE]]") from None
        queries.append(Query(qname.rstrip(".") or ".", qtype, expect))
    return tuple(queries)


def parse_settings(options) -> Settings:
    """Validate the --dns-* values of Locust's parsed options."""
    try:
        values = flag_values(options)
    except KnobError as exc:
        raise LoadError(str(exc)) from None
    try:
        nameservers = tuple(parse_address(text, values["port"]) for text in values["nameservers"])
    except KnobError as exc:
        raise LoadError(f"--dns-nameservers: {exc}; write IPv4[:PORT],...") from None
    names = parse_queries(values["names"])
    if values["who_share"] < 1.0 and not names:
        raise LoadError("--dns-names: empty, but --dns-who-share < 1 needs names; give e.g. www.lab.test:A")
    rate = values["rate"]
    return Settings(
        rate=rate,
        window=values["window"] or (DEFAULT_OPEN_WINDOW if rate else DEFAULT_CLOSED_WINDOW),
        client=values["client"],
        timeout_ms=values["timeout_ms"],
        attempts=values["attempts"],
        rotate=values["rotate"],
        nameservers=nameservers,
        tcp_share=values["tcp_share"],
        who_share=values["who_share"],
        queries=(Query(*WHO), *names),
        socket_mode=values["socket_mode"],
        records=values["records"],
        port=values["port"],
    )


def resolve_target(host: str | None, port: int) -> tuple[str, int]:
    """The IPv4 address and port to load from Locust's --host (`HOST`, `HOST:PORT` or `dns://HOST:PORT`)."""
    if not host:
        raise LoadError("--host: missing; give the DNS server's address, e.g. --host 192.168.100.100")
    parts = urlsplit(host if "://" in host else f"dns://{host}")
    try:
        name, port = parts.hostname or "", parts.port or port
    except ValueError:
        raise LoadError(f"--host: {host!r} has a bad port; write HOST or HOST:PORT") from None
    try:
        infos = _socket.getaddrinfo(name, port, _socket.AF_INET, _socket.SOCK_DGRAM)
    except OSError as exc:
        reason = exc.strerror or exc
        raise LoadError(f"--host: cannot resolve {name!r} ({reason}); give an IPv4 address") from None
    return infos[0][4][0], port


def check_records_dir(path: str) -> None:
    """Create the records directory if needed and prove it is writable."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".probe-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as exc:
        raise LoadError(f"--dns-records: {path!r} is not writable ({exc.strerror or exc}); "
                        "give a writable directory") from None


def build_schedule(settings: Settings, length: int = SCHEDULE_LENGTH) -> list[tuple[int, int]]:
    """A cycle of (query index, proto: 0 udp / 1 tcp) with the configured shares, evenly spread.

    Shares use low-discrepancy sequences (golden ratio for who, sqrt 2 for TCP) so that they
    interleave evenly and independently; the other names take turns.
    """
    golden, root2 = (math.sqrt(5) - 1) / 2, math.sqrt(2) - 1
    names = len(settings.queries) - 1
    schedule, turn = [], 0
    for i in range(length):
        if (i * golden) % 1.0 < settings.who_share:
            query = 0
        else:
            query, turn = 1 + turn % names, turn + 1
        schedule.append((query, int((i * root2) % 1.0 < settings.tcp_share)))
    return schedule
