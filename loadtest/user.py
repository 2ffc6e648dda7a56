"""`DnsUser`: the Locust user that loads DNS servers, importable like Locust's own contrib users.

    from loadtest.user import DnsUser  # in a locustfile; `locust -f loadtest/dns.py` is one

Works with the web UI, headless (`--headless -u N -r N -t 30s`), `--processes N` and master/worker.
Importing it registers its --dns-* arguments and their validation (loadtest/process.py) and the
records writer for --dns-records (loadtest/recording.py). The hot path is loadtest/engine.py, one
`Engine` per user; the user drains it every 50 ms: finished queries go to the `queries_done` event
as one batch, finished lookups to Locust's stats (answered ones in bulk, loadtest/stats.py).
"""

from __future__ import annotations

import itertools
import logging
import time

import gevent
from locust import User, task
from locust.exception import StopUser
from locust.runners import WorkerRunner
from locust.user.task import LOCUST_STATE_RUNNING

from loadtest import process, recording  # noqa: F401 (recording: registers the records writer)
from loadtest.engine import Engine
from loadtest.options import LoadError, resolve_target
from loadtest.records import OK, RCODE, TIMEOUT
from loadtest.stats import add_answered
from loadtest.wire import rcode_name

log = logging.getLogger("dnslab.loadtest")
DRAIN_EVERY_S = 0.05
PROTO_NAMES = ("UDP", "TCP")


class DnsUser(User):
    """Loads DNS servers with a window of lookups in flight (closed model) or at a fixed rate."""

    _numbers = itertools.count()

    def on_start(self) -> None:
        try:
            shared = process.prepare(self.environment, self.environment.runner)
            if shared.targets is None:
                shared.targets = [resolve_target(self.environment.host, shared.settings.port)]
        except LoadError as exc:
            log.error("dnslab loadtest: error: %s", exc)
            raise StopUser() from None
        self._number = next(self._numbers)
        self._settings = shared.settings
        self._labels = [q.label for q in shared.settings.queries]
        self._fire = self.environment.events.request.fire
        self._batch = process.queries_done.fire
        self._context: dict = {}
        self._engine = Engine(shared.settings, shared.targets, shared.wires,
                              [q.expect_rcode for q in shared.settings.queries], shared.schedule,
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
        """Hand finished queries to `queries_done` and report finished lookups to Locust, in one batch
        off the reply path.

        Locust counts lookups (for raw, every query is one): an answered lookup with its time from the
        first send to the answer, a failed one with its last query's outcome."""
        engine = self._engine
        done, engine.done = engine.done, []
        if done:
            columns = tuple(zip(*done, strict=True))
            self._batch(user=self._number, columns=columns)
            if self._settings.client == "raw":
                _, latencies, _, queries, _, outcomes, rcodes, protos, _, _ = columns
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
