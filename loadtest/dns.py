"""The dnslab Locust DNS user: `locust -f loadtest/dns.py --host SERVER [--dns-* ...]`.

Works with the web UI, headless (`--headless -u N -r N -t 30s`), `--processes N` and
master/worker. `--help` lists the --dns-* knobs (the table in loadtest/knobs.py). The hot path is in
loadtest/engine.py; this file wires it to Locust: argument validation at init (one-line error and
exit 2 before any load), one `Engine` per user, batched request events, per-query records
flushed twice a second, and the merge into queries.csv at quit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Locust imports this file as the module "dns" with its directory first on sys.path, which hides
# dnspython's `dns` package. Import dnspython and the loadtest package with that directory out of
# the way (and the repo or /opt/dnslab on the path when loadtest is not installed).
_HERE = Path(__file__).resolve().parent
sys.modules.pop("dns", None)
_saved_path = sys.path[:]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE.parent)]
try:
    import _socket
    import itertools
    import logging
    import signal
    import time
    from dataclasses import dataclass

    import gevent
    from locust import User, events, task
    from locust.exception import StopUser
    from locust.runners import MasterRunner, WorkerRunner
    from locust.user.task import LOCUST_STATE_RUNNING

    from loadtest.engine import Engine
    from loadtest.merge import merge
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
    from loadtest.records import FLUSH_EVERY_S, OK, RCODE, TIMEOUT, Recorder
    from loadtest.stats import add_answered
    from loadtest.wire import encode_query, rcode_name
finally:
    sys.path[:] = _saved_path

log = logging.getLogger("dnslab.loadtest")
DRAIN_EVERY_S = 0.05
MERGE_WAIT_S = 10.0
PROTO_NAMES = ("UDP", "TCP")


@dataclass
class _Process:
    """What every user of this process shares: settings, encoded queries, the recorder."""

    key: tuple
    settings: Settings
    targets: list[tuple[str, int]] | None  # the nameservers, or --host alone
    wires: list[bytes]
    schedule: list[tuple[int, int]]
    worker: bool
    recorder: Recorder | None = None


_process: _Process | None = None


def _fail(message: str) -> None:
    sys.stderr.write(f"dnslab loadtest: error: {message}\n")
    sys.stderr.flush()
    os._exit(2)  # before any load; also ends forked --processes children without their cleanup


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:
    add_arguments(parser)


@events.init.add_listener
def _on_init(environment, runner, **_kwargs) -> None:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # started in the background of a non-interactive shell: make SIGINT stop the run as documented
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _prepare(environment, runner)
    except LoadError as exc:
        _fail(str(exc))


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    """Tell the workers the total user count (Locust sends them our options, not -u)."""
    runner = environment.runner
    if not isinstance(runner, WorkerRunner) and environment.parsed_options is not None:
        environment.parsed_options.dns_total_users = runner.target_user_count


def _prepare(environment, runner) -> _Process:
    """Validate the --dns-* options and --host, and (re)build the process state when they changed.

    Runs at init and again at each user start: Locust workers get the master's options and host
    with the spawn message. Raises LoadError.
    """
    global _process
    options = environment.parsed_options
    key = (environment.host, *(getattr(options, name, None) for name in OPTION_NAMES))
    if _process is not None and _process.key == key:
        return _process
    settings = parse_settings(options)
    worker = isinstance(runner, WorkerRunner)
    targets = list(settings.nameservers) or None
    if targets is None and environment.host:
        targets = [resolve_target(environment.host, settings.port)]
    elif targets is None and getattr(options, "headless", False) and not worker:
        resolve_target(environment.host, settings.port)  # raises: no host
    recorder = _process.recorder if _process is not None else None
    if recorder is not None and settings.records != _process.settings.records:
        recorder.close()
        recorder = None
    if settings.records and recorder is None and not isinstance(runner, MasterRunner):
        check_records_dir(settings.records)
        queries = [(q.qname, q.qtype) for q in settings.queries]
        recorder = Recorder(settings.records, f"{_socket.gethostname()}-{os.getpid()}", queries)
        gevent.spawn(_flush_forever, recorder)
    elif settings.records and not recorder:
        check_records_dir(settings.records)
    wires = [encode_query(q.qname, q.qtype) for q in settings.queries]
    _process = _Process(key, settings, targets, wires, build_schedule(settings), worker, recorder)
    return _process


def _flush_forever(recorder: Recorder) -> None:
    while not recorder.closed:
        gevent.sleep(FLUSH_EVERY_S)
        recorder.flush()


@events.quit.add_listener
def _on_quit(**_kwargs) -> None:
    """After the users stopped: close this process's records, then merge them (not on workers)."""
    if _process is None or not _process.settings.records:
        return
    if _process.recorder is not None:
        _process.recorder.close()
    if not _process.worker:
        path, rows = merge(_process.settings.records, wait_s=MERGE_WAIT_S)
        log.info("dnslab loadtest: %d queries recorded in %s", rows, path)


class DnsUser(User):
    """Loads DNS servers with a window of lookups in flight (closed model) or at a fixed rate."""

    _numbers = itertools.count()

    def on_start(self) -> None:
        try:
            process = _prepare(self.environment, self.environment.runner)
            if process.targets is None:
                process.targets = [resolve_target(self.environment.host, process.settings.port)]
        except LoadError as exc:
            log.error("dnslab loadtest: error: %s", exc)
            raise StopUser() from None
        self._number = next(self._numbers)
        self._settings = process.settings
        self._recorder = process.recorder
        self._labels = [q.label for q in process.settings.queries]
        self._fire = self.environment.events.request.fire
        self._context: dict = {}
        self._engine = Engine(process.settings, process.targets, process.wires,
                              [q.expect_rcode for q in process.settings.queries], process.schedule,
                              start=self._number)

    @task
    def load(self) -> None:
        """Run until Locust stops this user."""
        engine, rate = self._engine, self._user_rate()
        engine.start()
        try:
            if rate:
                engine.run_open(rate, self._running, self.drain, DRAIN_EVERY_S)
            else:
                while self._running():
                    gevent.sleep(DRAIN_EVERY_S)
                    engine.fill()
                    self.drain()
        finally:
            self.drain()

    def on_stop(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            self.drain()
            engine.close()

    def _running(self) -> bool:
        return self._state == LOCUST_STATE_RUNNING

    def _user_rate(self) -> float:
        """This user's share of --dns-rate: the total split evenly over all users of the test.

        Locally the runner knows the current user count; a worker only knows its own share, so it
        uses the count the master had at the test's start (sent with our options).
        """
        total = self._settings.rate
        if not total:
            return 0.0
        runner, options = self.environment.runner, self.environment.parsed_options
        if isinstance(runner, WorkerRunner):
            users = getattr(options, "dns_total_users", 0) or getattr(options, "num_users", 0)
        else:
            users = runner.target_user_count or getattr(options, "num_users", 0)
        return total / (users or 1)

    def drain(self) -> None:
        """Record finished queries and report finished lookups to Locust, in one batch off the reply path.

        Locust counts lookups (for raw, every query is one): an answered lookup with its time from the
        first send to the answer, a failed one with its last query's outcome."""
        engine = self._engine
        done, engine.done = engine.done, []
        if done:
            (firsts, latencies, ports, queries, resolvers, outcomes, rcodes, protos, lookups,
             attempts) = zip(*done, strict=True)
            if self._recorder is not None:
                offset = time.time_ns() - time.monotonic_ns()
                self._recorder.add_batch(list(map(offset.__add__, firsts)), latencies, ports, self._number,
                                         queries, resolvers, outcomes, rcodes, protos, lookups, attempts)
                self._recorder.flush_if_due()
            if self._settings.client == "raw":
                self._report(zip(queries, protos, outcomes, rcodes, latencies, strict=True))
        if engine.lookups:
            finished, engine.lookups = engine.lookups, []
            self._report(finished)

    def _report(self, lookups) -> None:
        """Fire Locust's stats for (query, proto, outcome, rcode, ns) items: answered ones in bulk."""
        answered: dict[tuple[int, int], list[float]] = {}
        labels = self._labels
        for query, proto, outcome, rcode, elapsed in lookups:
            if outcome == OK:
                times = answered.get((proto, query))
                if times is None:
                    times = answered[(proto, query)] = []
                times.append(elapsed / 1e6)
            else:
                self._fire_failure(proto, labels[query], elapsed, outcome, rcode)
        stats, now = self.environment.stats, time.time()
        for (proto, query), times in answered.items():
            add_answered(stats, PROTO_NAMES[proto], labels[query], times, now)

    def _fire_failure(self, proto: int, label: str, elapsed: int, outcome: int, rcode: int) -> None:
        """One failed lookup; `elapsed` is its duration in ns (-1: a raw query without an answer)."""
        if outcome == RCODE:
            error = rcode_name(rcode)
        elif outcome == TIMEOUT:
            error = "timeout"
        else:
            error = "error: no answer (ICMP error or broken connection)"
        if elapsed >= 0:
            response_ms = elapsed / 1e6
        else:
            response_ms = self._settings.timeout_ms if outcome == TIMEOUT else 0.0
        self._fire(request_type=PROTO_NAMES[proto], name=label, response_time=response_ms,
                   response_length=0, exception=error, context=self._context)
