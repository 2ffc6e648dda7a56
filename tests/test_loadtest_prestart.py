"""loadtest/prestart.py: Locust imported ahead of the run, started by a go file, in a network namespace."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.loadtest import free_port, start_unbound
from loadtest.prestart import parse
from tests.conftest import REPO

pytestmark = pytest.mark.integration

ADDRESS = "127.0.0.84"
PRESTART = [sys.executable, str(REPO / "loadtest" / "prestart.py")]


def _prestart(go: Path, wait_s: float, *locust_args: str, netns: str = "",
              sigint: signal.Handlers = signal.SIG_DFL) -> subprocess.Popen:
    """prestart.py started with SIGINT's disposition `sigint` (SIG_IGN: as a background job of a
    non-interactive shell, which is how the runner starts it in the guest)."""
    command = [*PRESTART, "--go", str(go), "--netns", netns, "--wait-s", str(wait_s), "--", *locust_args]
    return subprocess.Popen(command, cwd="/", env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))


def test_the_arguments_after_the_separator_are_locusts():
    ours, locust = parse(["--go", "/x/go", "--wait-s", "5", "--", "-f", "dns.py", "--headless"])
    assert (ours.go, ours.netns, ours.wait_s) == ("/x/go", "", 5.0)
    assert locust == ["-f", "dns.py", "--headless"]
    with pytest.raises(SystemExit):
        parse(["--go", "/x/go", "--wait-s", "5"])


def test_without_its_go_file_it_exits_and_sends_nothing(tmp_path):
    records = tmp_path / "records"
    proc = _prestart(tmp_path / "go", 1, "-f", str(REPO / "loadtest" / "dns.py"), "--headless",
                     "--host", "127.0.0.1", "--dns-records", str(records))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "not starting the load" in err
    assert not records.exists()


@pytest.mark.parametrize("sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["foreground", "background"])
def test_interrupted_while_waiting_it_exits(tmp_path, sigint):
    """The runner stops a prestarted load it no longer needs with SIGINT (chaos/guest/stop.sh), also
    when it was started with SIGINT ignored, as `setsid ... &` from an SSH command leaves it."""
    records = tmp_path / "records"
    proc = _prestart(tmp_path / "go", 60, "-f", str(REPO / "loadtest" / "dns.py"), "--headless",
                     "--dns-records", str(records), sigint=sigint)
    time.sleep(3)  # importing Locust or waiting: either way SIGINT ends it, long before the 60 s
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode != 0 and not records.exists()


def test_the_go_file_starts_the_load_which_records_every_query(tmp_path):
    workdir, records = tmp_path / "unbound", tmp_path / "records"
    workdir.mkdir()
    port = free_port(ADDRESS)
    server = start_unbound(workdir, ADDRESS, port, name="ps1")
    try:
        go = tmp_path / "go"
        proc = _prestart(go, 60, "-f", str(REPO / "loadtest" / "dns.py"), "--headless", "-t", "2s",
                         "-u", "2", "-r", "2", "--host", f"{ADDRESS}:{port}", "--loglevel", "WARNING",
                         "--dns-rate", "100", "--dns-records", str(records))
        time.sleep(2)
        assert not records.exists() or not any(records.iterdir())  # nothing before the go
        threading.Timer(0.5, go.touch).start()
        _, err = proc.communicate(timeout=60)
        with open(records / "queries.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert 100 <= len(rows) <= 260, err
        assert {row["rcode"] for row in rows} == {"NOERROR"}, err
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: `ip netns add`")
def test_it_enters_the_named_network_namespace():
    name = f"dnslab-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        code = ("import os, sys; from loadtest.prestart import enter_netns; enter_netns(sys.argv[1]); "
                "print(os.stat('/proc/self/ns/net').st_ino)")
        out = subprocess.run([sys.executable, "-c", code, name], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout
        assert int(out) == os.stat(f"/run/netns/{name}").st_ino != os.stat("/proc/self/ns/net").st_ino
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)
