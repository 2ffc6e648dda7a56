"""The Locust side of the load generator: the locustfile as Locust loads it, and the records writer.

Both run in a child process: `import locust` monkey-patches with gevent, which deadlocks on the
import lock inside a pytest process that already runs threads (the e2e tests' SSH transports).
"""

from __future__ import annotations

import csv
import importlib.metadata
import subprocess
import sys
import time

from tests.conftest import REPO

LOAD_AS_LOCUST_DOES = """
import sys
from locust.util.load_locustfile import load_locustfile

path_before = list(sys.path)
users, _ = load_locustfile(sys.argv[1])
import dns
import dns.resolver  # a dnspython module nothing had imported yet
assert list(users) == ["DnsUser"], users
assert users["DnsUser"].__module__ == "loadtest.user"
assert dns.resolver.Resolver and dns.__path__, "dns is dnspython's package"
assert sys.argv[2] not in sys.path, "Locust took loadtest/ off sys.path again"
assert sys.path[1:] == path_before, "the locustfile changed sys.path (Locust adds only the cwd)"
print("loaded")
"""


def test_locust_loads_loadtest_dns_py_and_dnspython_stays_the_dns_package():
    proc = subprocess.run([sys.executable, "-c", LOAD_AS_LOCUST_DOES, str(REPO / "loadtest" / "dns.py"),
                           str(REPO / "loadtest")], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "loaded"


def test_no_loadtest_module_but_dns_shadows_a_top_level_module():
    # Locust puts the locustfile's directory (loadtest/) first on sys.path while it loads it: a module
    # there named like a standard or installed module hides it (dns.py hides dnspython and works around it).
    names = {path.stem for path in (REPO / "loadtest").glob("*.py")} - {"__init__"}
    taken = set(sys.stdlib_module_names) | set(importlib.metadata.packages_distributions())
    assert names & taken == {"dns"}


WRITE_RECORDS = """
import os
import sys
from types import SimpleNamespace

from locust.env import Environment
from locust.event import EventHook, Events

from loadtest import process
from loadtest.knobs import DNS_KNOBS
from loadtest.recording import RecordsWriter

options = SimpleNamespace(**{knob.dest: knob.text(knob.default) for knob in DNS_KNOBS}, headless=True)
options.dns_records = sys.argv[1]
environment = Environment(events=Events(), host="127.0.0.1:53", parsed_options=options)
process.prepare(environment, environment.create_local_runner())
writer = RecordsWriter()
hook = EventHook()
writer.listen(environment.events, hook)
assert not any(name.endswith(".dq") for name in os.listdir(sys.argv[1])), "no file before a batch"
# user 3's batch: one query answered by rs1 after 0.5 ms, one timed out (columns of Engine.done)
hook.fire(user=3, columns=((1_000, 2_000), (500_000, -1), (4000, 4001), (0, 0), ("rs1", ""), (0, 1),
                           (0, 255), (0, 0), (7, 8), (0, 1)))
environment.events.test_stop.fire(environment=environment)
environment.events.quit.fire(exit_code=0)
print("written")
"""


def test_the_records_writer_listens_to_the_batches_and_merges_at_quit(tmp_path):
    before = time.time_ns() - time.monotonic_ns()
    proc = subprocess.run([sys.executable, "-c", WRITE_RECORDS, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    after = time.time_ns() - time.monotonic_ns()
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "queries.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["latency_ms"], r["outcome"], r["rcode"], r["resolver"], r["src_port"], r["lookup_id"],
             r["attempt"]) for r in rows] == [("0.500", "ok", "NOERROR", "rs1", "4000", "7", "0"),
                                              ("", "timeout", "", "", "4001", "8", "1")]
    assert {r["worker"].rsplit(".", 1)[1] for r in rows} == {"u3"}
    # monotonic send times became CLOCK_REALTIME (the clocks' offset, up to 50 ms of drift apart)
    sent = int(rows[0]["t_send_ns"]) - 1_000
    assert before - 50_000_000 <= sent <= after + 50_000_000
