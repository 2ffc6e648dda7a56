"""The run's recorders in the guest: the load generator (Locust, in the client namespace), the IPVS
sampler and Keepalived's notify reader. The load generator is prestarted while the run deploys
(loadtest/prestart.py imports Locust, ~8 s under TCG, and waits for the run's go file); all start
together, stop by themselves after the run's planned end plus a margin (nothing keeps running if this
side dies) and are stopped together, each only if it still is this run's."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console

from chaos import guest, probes
from lab.model.config import Lab
from lab.model.errors import ActionFailed
from lab.model.layout import CLIENT_NS, HOME, LOCUST, LOCUSTFILE, PYTHON
from lab.ssh import remote
from loadtest import prestart

LOAD_START_TIMEOUT_S = 90.0
# Guest probes stop by themselves this long after the run's planned end: room for the slip (container
# starts under TCG put all-down-repeat over 4 min behind its plan) and then some.
PROBE_MARGIN_S = 600.0
MAX_SLIP_S = PROBE_MARGIN_S - 60.0  # a run further behind its plan than this stops (chaos.timeline.Pace)
PRESTART_WAIT_S = 300.0  # a prestarted load generator without its go file exits after this long


def locust_arguments(lab: Lab, remote_dir: str, run_time_s: float) -> list[str]:
    """Locust's arguments for the lab's [load] settings (their flags: loadtest/knobs.py), recording
    into `remote_dir`/records and stopping by itself after run_time_s."""
    from loadtest.knobs import locust_arguments as knob_arguments

    values = {**asdict(lab.load), "nameservers": lab.nameserver_addresses()}
    return ["-f", LOCUSTFILE, "--headless", "--only-summary", "--loglevel", "WARNING",
            "--host", str(lab.network.vip), "--run-time", f"{int(run_time_s)}s",
            *knob_arguments(values), "--dns-records", f"{remote_dir}/records"]


def locust_command(lab: Lab, remote_dir: str, run_time_s: float) -> str:
    """Locust with `locust_arguments`, to be started in the client namespace."""
    return _with_loadtest([LOCUST, *locust_arguments(lab, remote_dir, run_time_s)])


def prestart_command(lab: Lab, remote_dir: str, run_time_s: float) -> str:
    """loadtest/prestart.py (uploaded as `remote_dir`/prestart.py): Locust imported now, run in the
    client namespace with `locust_arguments` once `remote_dir`/go exists (it exits unstarted after
    PRESTART_WAIT_S)."""
    return _with_loadtest([PYTHON, prestart_script(remote_dir), "--go", go_file(remote_dir),
                           "--netns", CLIENT_NS, "--wait-s", f"{PRESTART_WAIT_S:g}", "--",
                           *locust_arguments(lab, remote_dir, run_time_s)])


def _with_loadtest(argv: list[str]) -> str:
    """`argv` as a quoted command line that imports the deployed loadtest package."""
    return f"env PYTHONPATH={HOME} " + " ".join(shlex.quote(a) for a in argv)


def go_file(remote_dir: str) -> str:
    return f"{remote_dir}/go"


def prestart_script(remote_dir: str) -> str:
    return f"{remote_dir}/prestart.py"


@dataclass
class Recorders:
    """One run's recorders in `remote_dir` (the run's guest directory); `end_s`: the run's planned length."""

    conn: Any
    lab: Lab
    remote_dir: str
    uses_load: bool
    end_s: float

    def locust_command(self) -> str:
        return prestart_command(self.lab, self.remote_dir, self.end_s + PROBE_MARGIN_S)

    def prestart(self) -> None:
        """Start the load generator's import (loadtest/prestart.py), before the run's deploy: it sends
        nothing until `start` gives the go. `stop` ends it either way."""
        remote.run(self.conn, f"mkdir -p {shlex.quote(self.remote_dir + '/records')}", check=True,
                   what="making the run's directory in the guest")
        if self.uses_load:
            remote.put(self.conn, prestart.__file__, prestart_script(self.remote_dir))
            probes.start_background(self.conn, self.locust_command(), f"{self.remote_dir}/load.pid",
                                    f"{self.remote_dir}/locust.log")

    def start(self, console: Console) -> None:
        """Give the prestarted load generator its go, start the IPVS sampler and the notify reader
        while it starts, then wait for its first records."""
        go = f" && touch {shlex.quote(go_file(self.remote_dir))}" if self.uses_load else ""
        remote.run(self.conn, f"mkdir -p {shlex.quote(self.remote_dir + '/records')}{go}", check=True,
                   what="starting the load generator")
        max_s = LOAD_START_TIMEOUT_S + self.end_s + PROBE_MARGIN_S  # they stop by themselves then
        probes.start_sampler(self.conn, self.lab, self.remote_dir, max_s=max_s)
        probes.start_notify_reader(self.conn, self.lab, self.remote_dir, max_s=max_s)
        if self.uses_load:
            with console.status("starting the load generator"):
                self.wait_for_load()

    def wait_for_load(self) -> None:
        """Wait until the load generator has written its first records; one SSH round trip
        (chaos/guest/wait_load.sh polls every 0.1 s and answers ready, exited or timeout)."""
        state = remote.run_script(self.conn, guest.script("wait_load.sh"), self.remote_dir,
                                  int(LOAD_START_TIMEOUT_S * 10)).stdout.strip()
        if state == "ready":
            return
        if state == "exited":
            log = remote.run(self.conn, f"tail -5 {shlex.quote(self.remote_dir + '/locust.log')}").stdout
            raise ActionFailed(f"the load generator exited at start: {' '.join(log.split())[-300:]}")
        raise ActionFailed(f"the load generator wrote no records within {LOAD_START_TIMEOUT_S:g} s")

    def stop(self) -> bool:
        """Stop the load generator, the sampler and the notify reader together (one round trip), each
        only if it still is this run's; True when all exited in time."""
        stops = [(f"{self.remote_dir}/sampler.pid", "TERM", 10.0),
                 (f"{self.remote_dir}/notify.pid", "TERM", 10.0)]
        if self.uses_load:
            stops.insert(0, (f"{self.remote_dir}/load.pid", "INT", 30.0))
        return probes.stop_all(self.conn, stops, owner=f"{self.remote_dir}/")

