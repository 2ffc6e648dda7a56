"""The records writer: a Locust listener that keeps every query the DNS users finish (--dns-records).

It listens on `loadtest.process.queries_done` (each user's batches: appended to this process's
`Recorder`, flushed when the last flush is 0.5 s old; a greenlet also flushes every 0.5 s), on
`test_stop` (flush) and on `quit` (close the file; the non-worker process then merges the records
directory into queries.csv, waiting up to 10 s for its local workers' files to be closed).
The file is `DIR/<host>-<pid>.dq`, opened with the first batch (and again when the options name
another directory). Importing this module registers `WRITER` on Locust's events.
"""

from __future__ import annotations

import _socket
import logging
import os
import time

import gevent
from locust import events

from loadtest import process
from loadtest.merge import merge
from loadtest.records import FLUSH_EVERY_S, Recorder

log = logging.getLogger("dnslab.loadtest")
MERGE_WAIT_S = 10.0


class RecordsWriter:
    """Appends the batches of finished queries to this process's records file."""

    def __init__(self) -> None:
        self.recorder: Recorder | None = None
        self.directory = ""

    def listen(self, locust_events, batches) -> None:
        """Subscribe to Locust's `locust_events` and to the users' `batches` hook."""
        batches.add_listener(self.on_batch)
        locust_events.test_stop.add_listener(self.on_test_stop)
        locust_events.quit.add_listener(self.on_quit)

    def on_batch(self, user: int, columns: tuple, **_kwargs) -> None:
        state = process.current()
        if state is None:
            return
        if state.settings.records != self.directory:
            self._open(state)
        recorder = self.recorder
        if recorder is None:
            return
        (firsts, latencies, ports, queries, resolvers, outcomes, rcodes, protos, lookups, attempts) = columns
        offset = time.time_ns() - time.monotonic_ns()
        recorder.add_batch(list(map(offset.__add__, firsts)), latencies, ports, user, queries, resolvers,
                           outcomes, rcodes, protos, lookups, attempts)
        recorder.flush_if_due()

    def on_test_stop(self, **_kwargs) -> None:
        if self.recorder is not None:
            self.recorder.flush()

    def on_quit(self, **_kwargs) -> None:
        """After the users stopped: close this process's records, then merge them (not on workers)."""
        if self.recorder is not None:
            self.recorder.close()
        state = process.current()
        if state is not None and state.settings.records and not state.worker:
            path, rows = merge(state.settings.records, wait_s=MERGE_WAIT_S)
            log.info("dnslab loadtest: %d queries recorded in %s", rows, path)

    def _open(self, state: process.Process) -> None:
        """Close the file of the previous directory and open one in the current one (if any)."""
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
        self.directory = state.settings.records
        if self.directory:
            queries = [(q.qname, q.qtype) for q in state.settings.queries]
            self.recorder = Recorder(self.directory, f"{_socket.gethostname()}-{os.getpid()}", queries)
            gevent.spawn(_flush_forever, self.recorder)


def _flush_forever(recorder: Recorder) -> None:
    while not recorder.closed:
        gevent.sleep(FLUSH_EVERY_S)
        recorder.flush()


WRITER = RecordsWriter()
WRITER.listen(events, process.queries_done)
