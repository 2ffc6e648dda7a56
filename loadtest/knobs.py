"""The load settings, defined once.

Each `Knob` is one setting of the load generator: its command-line flag, its type, range and
default, and whether lab.toml's `[load]` table sets it. From this one table come:
- the Locust user's `--dns-*` arguments and their validation (`loadtest.options`);
- the `[load]` table's model and validation (`lab.model.config.Load`);
- the chaos runner's Locust command line (`locust_arguments`).
Stdlib only: lab/model/config.py imports it on the host, the Locust user inside the guest.

Values come as text (a flag: `Knob.parse_text`) or typed (TOML: `Knob.parse`); both raise `KnobError`
with the problem only ("must be ..., got ..."), which the caller prefixes with the flag or the file
and key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

CLIENTS = ("raw", "glibc", "musl")
SOCKET_MODES = ("fresh", "reuse")
MAXNS = 3  # glibc's and musl's limit on nameserver lines in resolv.conf
# Per client model: (largest attempts, largest timeout in ms), as resolv.conf clamps them:
# glibc RES_MAXRETRY 5 / RES_MAXRETRANS 30 s (resolv/res_init.c), musl 10 / 60 s (resolvconf.c).
CLIENT_LIMITS = {"glibc": (5, 30_000.0), "musl": (10, 60_000.0)}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class KnobError(ValueError):
    """A bad value: the problem only, without the flag or key."""


@dataclass(frozen=True)
class Knob:
    """One setting: `kind` is float, int, bool, choice, list or text."""

    key: str
    kind: str
    default: Any
    help: str
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # the value must be > low (not >= low)
    choices: tuple[str, ...] = ()
    lab: bool = True  # a [load] key in lab.toml
    lab_default: Any = None  # the [load] default when it differs from the generator's
    flags: tuple[str, ...] = ()  # default: --dns-KEY

    @property
    def flag(self) -> str:
        return self.flags[0] if self.flags else "--dns-" + self.key.replace("_", "-")

    @property
    def dest(self) -> str:
        """The attribute of Locust's parsed options that holds it."""
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def table_default(self) -> Any:
        return self.default if self.lab_default is None else self.lab_default

    def parse_text(self, text: str) -> Any:
        """The validated value of a flag's text (a list is comma-separated)."""
        if self.kind == "list":
            return self.parse([part.strip() for part in text.split(",")] if text.strip() else [])
        return self.parse(text if self.kind in ("choice", "text") else self._from_text(text))

    def parse(self, value: Any) -> Any:
        """The validated value of a typed value (as TOML gives it)."""
        if self.kind == "list":
            return self._list(value)
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise KnobError(f"must be true or false, got {value!r}")
            return value
        if self.kind in ("choice", "text"):
            if not isinstance(value, str):
                raise KnobError(f"must be a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise KnobError(f"must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        return self._number(value)

    def _from_text(self, text: str) -> Any:
        word = text.strip().lower()
        if self.kind == "bool":
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
            raise KnobError(f"must be true or false, got {text!r}")
        try:
            return int(word) if self.kind == "int" else float(word)
        except ValueError:
            raise KnobError(f"must be {self._kind_name}, got {text!r}") from None

    @property
    def _kind_name(self) -> str:
        return "an integer" if self.kind == "int" else "a number"

    def _number(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                self.kind == "int" and not isinstance(value, int)):
            raise KnobError(f"must be {self._kind_name}, got {value!r}")
        if not math.isfinite(value):
            raise KnobError(f"must be a finite number, got {value!r}")
        low_ok = value > self.low if self.low_open else value >= self.low
        if not (low_ok and value <= self.high):
            raise KnobError(f"must be {self.bounds}, got {value!r}")
        return float(value) if self.kind == "float" else value

    @property
    def bounds(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low_open:
            return f"> {self.low:g} and <= {self.high:g}"
        return f"between {self.low:g} and {self.high:g}"

    def _list(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise KnobError(f"must be a list of strings, got {value!r}")
        if any(not v.strip() for v in value):
            raise KnobError(f"has an empty item in {list(value)!r}")
        return tuple(v.strip() for v in value)

    def text(self, value: Any) -> str:
        """The value as this knob's flag takes it."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return f"{value:.15g}"
        if isinstance(value, list | tuple):
            return ",".join(value)
        return str(value)


KNOBS: tuple[Knob, ...] = (
    Knob("rate", "float", 0.0, "lookups started per second over all users (open model); 0 = as fast as "
         "the window allows (closed model)", low=0.0),
    Knob("users", "int", 1, "Locust users (-u, spawned at once)", low=1, flags=("-u", "-r")),
    Knob("window", "int", 0, "lookups in flight per user; 0 = 100 in the closed model, 10000 in the open one",
         low=0, high=60_000),
    Knob("client", "choice", "raw", "client model: raw (one query, one timeout, no retry) | glibc (the stub "
         "resolver: timeout, attempts, rotate over the nameservers) | musl (all nameservers at once, resent "
         "every timeout/attempts)", choices=CLIENTS),
    Knob("timeout_ms", "float", 1000.0, "raw: the query timeout; glibc: resolv.conf `timeout` (per attempt, "
         "scaled by the nameserver's position); musl: resolv.conf `timeout` (the whole lookup)",
         low=1.0, high=600_000.0),
    Knob("attempts", "int", 2, "resolv.conf `attempts` (glibc: passes over the nameservers; musl: sends "
         "per nameserver within the timeout); raw sends once", low=1, high=10),
    Knob("rotate", "bool", False, "resolv.conf `options rotate` (glibc): each lookup starts at the next "
         "nameserver"),
    Knob("nameservers", "list", (), "the client's nameservers, in resolv.conf order, as IPv4[:PORT],... "
         "(default: --host; raw uses the first). In lab.toml: vip, a resolver's name or an address in the "
         "lab subnet", lab_default=("vip",)),
    Knob("tcp_share", "float", 0.0, "share of queries sent over TCP (raw only; 0..1)", low=0.0, high=1.0),
    Knob("who_share", "float", 1.0, "share of queries that are who.lab.test TXT, naming the resolver (0..1)",
         low=0.0, high=1.0),
    Knob("socket_mode", "choice", "fresh", "fresh: sockets as the client model opens them (raw: a new source "
         "port per query) | reuse: one long-lived socket per user (and nameserver)", choices=SOCKET_MODES),
    Knob("names", "text", "www.lab.test:A,www.lab.test:AAAA,mail.lab.test:A,lab.test:MX",
         "the rest of the mix: NAME[:TYPE[:RCODE]],... RCODE is the expected answer (e.g. "
         "nx.lab.test:A:NXDOMAIN); default NOERROR", lab=False),
    Knob("records", "text", "", "directory for per-query records (merged into queries.csv); empty = off",
         lab=False),
    Knob("port", "int", 53, "server port (a port in --host or a nameserver wins)", low=1, high=65535,
         lab=False),
)
BY_KEY = {knob.key: knob for knob in KNOBS}
LAB_KNOBS = tuple(knob for knob in KNOBS if knob.lab)
DNS_KNOBS = tuple(knob for knob in KNOBS if knob.flag.startswith("--dns-"))


def check_combination(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """(key, problem) when settings that are each valid do not go together, else None."""
    client = values.get("client", "raw")
    if client != "raw":
        if values.get("tcp_share", 0.0) > 0:
            return "tcp_share", f"must be 0 with client = {client}: the stub models send UDP only"
        attempts, timeout = CLIENT_LIMITS[client]
        if values.get("attempts", 1) > attempts:
            return "attempts", f"{client} allows at most {attempts}, got {values['attempts']}"
        if values.get("timeout_ms", 0.0) > timeout:
            return "timeout_ms", f"{client} allows at most {timeout:g} ms, got {values['timeout_ms']:g}"
        if client == "musl" and values.get("timeout_ms", 1000.0) < values.get("attempts", 1):
            return "timeout_ms", (f"musl resends every timeout/attempts ms: give at least "
                                  f"{values['attempts']} ms, got {values['timeout_ms']:g}")
    if len(values.get("nameservers", ())) > MAXNS:
        return "nameservers", f"at most {MAXNS} (resolv.conf's MAXNS), got {len(values['nameservers'])}"
    return None


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """`IPv4` or `IPv4:PORT` as (address, port); raises KnobError."""
    host, _, port = text.partition(":")
    try:
        address = str(IPv4Address(host))
        number = int(port) if port else default_port
    except ValueError:
        raise KnobError(f"{text!r} is not IPv4 or IPv4:PORT") from None
    if not 1 <= number <= 65535:
        raise KnobError(f"{text!r} has a port outside 1..65535")
    return address, number


def add_arguments(parser) -> None:
    """Register every --dns-* knob on Locust's argument parser (they also show in its web UI)."""
    for knob in DNS_KNOBS:
        parser.add_argument(knob.flag, type=str, default=knob.text(knob.default),
                            env_var=knob.dest.upper(), help=knob.help)


def locust_arguments(values: Mapping[str, Any]) -> list[str]:
    """The Locust command-line arguments that set `values` (one value per lab knob)."""
    args: list[str] = []
    for knob in LAB_KNOBS:
        for flag in knob.flags or (knob.flag,):
            args += [flag, knob.text(values[knob.key])]
    return args


def flag_values(options, knobs: Sequence[Knob] = DNS_KNOBS) -> dict[str, Any]:
    """The validated values of Locust's parsed options; raises KnobError prefixed with the flag."""
    out = {}
    for knob in knobs:
        try:
            out[knob.key] = knob.parse_text(str(getattr(options, knob.dest)))
        except KnobError as exc:
            raise KnobError(f"{knob.flag}: {exc}") from None
    problem = check_combination(out)
    if problem:
        raise KnobError(f"{BY_KEY[problem[0]].flag}: {problem[1]}")
    return out
