"""What the DNS users of one Locust process share, and the Locust listeners that build it.

Importing this module registers them on Locust's events: the --dns-* arguments (the table in
loadtest/knobs.py), their validation at init (one line `dnslab loadtest: error: ...` and exit 2
before any load), and the total user count sent to workers at the test's start. `prepare` builds
the state the users share (validated settings, targets, encoded queries, the schedule) and builds
it again when the options change: Locust workers get the master's options and host with each
spawn message.

`queries_done` is the event a `DnsUser` fires with each batch of finished queries; the records
writer (loadtest/recording.py) listens to it.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

from locust import events
from locust.event import EventHook
from locust.runners import WorkerRunner

from loadtest.options import (
    OPTION_NAMES,
    LoadError,
    Settings,
    add_arguments,
    build_schedule,
    check_records_dir,
    parse_settings,
    resolve_target,
)
from loadtest.wire import encode_query

queries_done = EventHook()
"""Fired by a DnsUser with each batch of its finished queries, from its greenlet:
`queries_done.fire(user=N, columns=(send ns, latency ns, ...))`, one tuple per field of
`Engine.done` (loadtest/inflight.py), each as long as the batch. Send times are monotonic ns."""


@dataclass
class Process:
    """What every user of this process shares."""

    key: tuple  # the options it was built from
    settings: Settings
    targets: list[tuple[str, int]] | None  # the nameservers, or --host alone (None: not known yet)
    wires: list[bytes]
    schedule: list[tuple[int, int]]
    worker: bool  # a Locust worker (its master merges the records)


_current: Process | None = None


def current() -> Process | None:
    """The state `prepare` built last (None before Locust's init)."""
    return _current


def prepare(environment, runner) -> Process:
    """Validate the --dns-* options and --host, and (re)build the process state when they changed.

    Runs at init and again at each user start. Raises LoadError.
    """
    global _current
    options = environment.parsed_options
    key = (environment.host, *(getattr(options, name, None) for name in OPTION_NAMES))
    if _current is not None and _current.key == key:
        return _current
    settings = parse_settings(options)
    worker = isinstance(runner, WorkerRunner)
    targets = list(settings.nameservers) or None
    if targets is None and environment.host:
        targets = [resolve_target(environment.host, settings.port)]
    elif targets is None and getattr(options, "headless", False) and not worker:
        resolve_target(environment.host, settings.port)  # raises: no host
    if settings.records:
        check_records_dir(settings.records)
    wires = [encode_query(q.qname, q.qtype) for q in settings.queries]
    _current = Process(key, settings, targets, wires, build_schedule(settings), worker)
    return _current


def fail(message: str) -> None:
    """One line on stderr and exit 2: for bad input, before any load."""
    sys.stderr.write(f"dnslab loadtest: error: {message}\n")
    sys.stderr.flush()
    os._exit(2)  # also ends forked --processes children without their cleanup


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:
    add_arguments(parser)


@events.init.add_listener
def _on_init(environment, runner, **_kwargs) -> None:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # started in the background of a non-interactive shell: make SIGINT stop the run as documented
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        prepare(environment, runner)
    except LoadError as exc:
        fail(str(exc))


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    """Tell the workers the total user count (Locust sends them our options, not -u)."""
    runner = environment.runner
    if not isinstance(runner, WorkerRunner) and environment.parsed_options is not None:
        environment.parsed_options.dns_total_users = runner.target_user_count
