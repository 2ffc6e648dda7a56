"""The load generator's knobs: Locust custom arguments, validated into a frozen `Settings`.

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

from loadtest.wire import rcode_value

WHO = ("who.lab.test", "TXT")
DEFAULT_NAMES = "www.lab.test:A,www.lab.test:AAAA,mail.lab.test:A,lab.test:MX"
SOCKET_MODES = ("fresh", "reuse")
OPTION_NAMES = ("dns_rate", "dns_window", "dns_timeout_ms", "dns_retries", "dns_tcp_share", "dns_who_share",
                "dns_names", "dns_socket_mode", "dns_records", "dns_port")
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
    """Everything a DNS user needs, validated. `queries[0]` is always who.lab.test TXT."""

    rate: float
    window: int
    timeout_ms: float
    retries: int
    tcp_share: float
    who_share: float
    queries: tuple[Query, ...]
    socket_mode: str
    records: str
    port: int

    @property
    def scan_interval_s(self) -> float:
        """How often pending queries are checked for timeouts: the timeout resolution."""
        return min(0.01, max(0.001, self.timeout_ms / 1000 / 20))


def add_arguments(parser) -> None:
    """Register the --dns-* arguments on Locust's argument parser (they also show in the web UI)."""
    parser.add_argument("--dns-rate", type=str, default="0", env_var="DNS_RATE",
                        help="total queries/s over all users (open model); 0 = unbounded (closed model)")
    parser.add_argument("--dns-window", type=str, default="0", env_var="DNS_WINDOW",
                        help=f"queries in flight per user; 0 = {DEFAULT_CLOSED_WINDOW} closed, "
                             f"{DEFAULT_OPEN_WINDOW} open")
    parser.add_argument("--dns-timeout-ms", type=str, default="1000", env_var="DNS_TIMEOUT_MS",
                        help="a query without an answer after this long is a timeout")
    parser.add_argument("--dns-retries", type=str, default="0", env_var="DNS_RETRIES",
                        help="resends after a timeout before the query counts as one")
    parser.add_argument("--dns-tcp-share", type=str, default="0", env_var="DNS_TCP_SHARE",
                        help="share of queries sent over TCP (0..1)")
    parser.add_argument("--dns-who-share", type=str, default="1", env_var="DNS_WHO_SHARE",
                        help="share of queries that are who.lab.test TXT, naming the resolver (0..1)")
    parser.add_argument("--dns-names", type=str, default=DEFAULT_NAMES, env_var="DNS_NAMES",
                        help="the rest of the mix: NAME[:TYPE[:RCODE]],... RCODE is the expected answer "
                             "(e.g. nx.lab.test:A:NXDOMAIN); default NOERROR")
    parser.add_argument("--dns-socket-mode", type=str, default="fresh", env_var="DNS_SOCKET_MODE",
                        help="fresh: a new UDP source port per query (stub) | reuse: one socket per user")
    parser.add_argument("--dns-records", type=str, default="", env_var="DNS_RECORDS",
                        help="directory for per-query records (merged into queries.csv); empty = off")
    parser.add_argument("--dns-port", type=str, default="53", env_var="DNS_PORT",
                        help="server port (a port in --host wins)")


def _number(options, attr: str, kind: type, low: float, high: float = math.inf):
    flag = "--" + attr.replace("_", "-")
    text = str(getattr(options, attr))
    try:
        value = kind(text)
    except ValueError:
        raise LoadError(f"{flag}: {text!r} is not a {kind.__name__}; give e.g. {kind(low)}") from None
    if not (low <= value <= high) or (kind is float and not math.isfinite(value)):
        raise LoadError(f"{flag}: {text} is out of range; give a value in [{low}, {high}]")
    return value


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
    mode = str(options.dns_socket_mode)
    if mode not in SOCKET_MODES:
        raise LoadError(f"--dns-socket-mode: {mode!r} is not one of {', '.join(SOCKET_MODES)}")
    rate = _number(options, "dns_rate", float, 0.0)
    window = _number(options, "dns_window", int, 0, 60_000)
    who_share = _number(options, "dns_who_share", float, 0.0, 1.0)
    names = parse_queries(str(options.dns_names))
    if who_share < 1.0 and not names:
        raise LoadError("--dns-names: empty, but --dns-who-share < 1 needs names; give e.g. www.lab.test:A")
    return Settings(
        rate=rate,
        window=window or (DEFAULT_OPEN_WINDOW if rate else DEFAULT_CLOSED_WINDOW),
        timeout_ms=_number(options, "dns_timeout_ms", float, 1.0, 600_000.0),
        retries=_number(options, "dns_retries", int, 0, 10),
        tcp_share=_number(options, "dns_tcp_share", float, 0.0, 1.0),
        who_share=who_share,
        queries=(Query(*WHO), *names),
        socket_mode=mode,
        records=str(options.dns_records or ""),
        port=_number(options, "dns_port", int, 1, 65535),
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
