"""Removal on exit's container form (lab/guest/dnslab-docker-exits.py) against a real Unbound on loopback
and an API that speaks Docker's wire format on a Unix socket (events streamed chunked, one JSON object a
line; Docker itself runs in the lab VM: tests/e2e/test_compose.py): the files Keepalived watches follow
the resolver containers' die and start events."""

from __future__ import annotations

import importlib.util
import json
import queue
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.conftest import REPO

LIVE, DEAD, PORT = "127.0.0.61", "127.0.0.62", 5361


def _module():
    path = REPO / "lab" / "guest" / "dnslab-docker-exits.py"
    spec = importlib.util.spec_from_file_location("docker_exits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


exits = _module()


class FakeDocker(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """GET /containers/json (the given list), /containers/ID/json (State.Pid from `pids`) and /events
    (what the test puts in `events`; None ends it)."""

    daemon_threads = True

    def __init__(self, path: str, containers: list[dict]) -> None:
        self.containers, self.events, self.queries = containers, queue.Queue(), []
        self.pids: dict[str, int] = {}
        super().__init__(path, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:
        return "docker.sock"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        server: FakeDocker = self.server  # type: ignore[assignment]
        server.queries.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path.startswith("/containers/"):
            if self.path.startswith("/containers/json"):
                body = json.dumps(server.containers).encode()
            else:
                cid = self.path.split("/")[2]
                body = json.dumps({"Id": cid, "State": {"Pid": server.pids.get(cid, 0)}}).encode()
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while (event := server.events.get()) is not None:
            line = json.dumps(event).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


def container(name: str, address: str, state: str) -> dict:
    return {"Id": f"id-{name}", "State": state, "Labels": {exits.LABEL: name, exits.ADDRESS_LABEL: address}}


def event(action: str, name: str, address: str, **attributes: str) -> dict:
    return {"Type": "container", "Action": action, "status": action, "id": f"id-{name}",
            "Actor": {"ID": f"id-{name}",
                      "Attributes": {exits.LABEL: name, exits.ADDRESS_LABEL: address, **attributes}}}


@pytest.fixture(scope="module")
def unbound(tmp_path_factory):
    from bench.loadtest import start_unbound

    proc = start_unbound(tmp_path_factory.mktemp("unbound"), LIVE, PORT, name="rs1")
    yield proc
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def docker(tmp_path):
    server = FakeDocker(str(tmp_path / "docker.sock"),
                        [container("rs1", LIVE, "running"), container("rs2", DEAD, "exited")])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.events.put(None)
    server.shutdown()


def state(directory: Path, name: str) -> str | None:
    path = directory / f"{name}.down"
    return path.read_text().strip() if path.exists() else None


def wait_for(directory: Path, name: str, value: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while state(directory, name) != value:
        assert time.monotonic() < deadline, f"{name}.down stayed {state(directory, name)!r}, not {value}"
        time.sleep(0.02)


def test_the_files_follow_die_and_start_and_a_die_beats_a_pending_start(unbound, docker, tmp_path):
    out = tmp_path / "exit"
    result: list[int] = []
    watcher = threading.Thread(
        target=lambda: result.append(exits.watch(str(out), docker.server_address, PORT)))
    watcher.start()
    wait_for(out, "rs1", "0")  # running and answering
    wait_for(out, "rs2", "1")  # exited
    events = next(q for q in docker.queries if q.startswith("/events"))
    assert "label" in events and "die" in events  # only labelled containers' start/kill/die

    docker.events.put(event("die", "rs1", LIVE, exitCode="137"))
    wait_for(out, "rs1", "1", timeout_s=1.0)
    docker.events.put(event("start", "rs1", LIVE))
    wait_for(out, "rs1", "0")
    docker.events.put(event("kill", "rs1", LIVE, signal="15"))  # docker stop: out before it exits
    wait_for(out, "rs1", "1", timeout_s=1.0)
    docker.events.put(event("kill", "rs1", LIVE, signal="1"))  # a SIGHUP does not end it: no change
    docker.events.put(event("pause", "rs1", LIVE))

    docker.events.put(event("start", "rs2", DEAD))  # started but not answering yet ...
    time.sleep(0.5)
    assert state(out, "rs2") == "1"
    docker.events.put(event("die", "rs2", DEAD))  # ... and gone again: its probe must not write 0
    time.sleep(0.3)
    assert state(out, "rs2") == "1"

    docker.events.put(None)  # Docker's stream ends: the watcher exits non-zero (restart policy)
    watcher.join(timeout=5)
    assert result == [1]
    assert state(out, "rs1") == "1" and not list(out.glob("*.tmp"))


def test_the_process_s_exit_is_told_before_docker_s_die_event(unbound, docker, tmp_path):
    """A pidfd on the container's process: 1 the instant it exits, with no event from Docker at all."""
    import subprocess

    process = subprocess.Popen(["sleep", "60"])
    docker.pids["id-rs1"] = process.pid
    out = tmp_path / "exit"
    threading.Thread(target=exits.watch, args=(str(out), docker.server_address, PORT), daemon=True).start()
    wait_for(out, "rs1", "0")
    time.sleep(0.2)  # the pidfd is open once the probe thread has asked Docker for the process
    process.kill()
    process.wait()
    wait_for(out, "rs1", "1", timeout_s=0.5)


def test_a_probe_whose_resolver_never_answers_gives_up_to_the_regular_check(monkeypatch, tmp_path):
    """After READY_TIMEOUT_S the file says 0 anyway: Keepalived's own check still gates its return."""
    monkeypatch.setattr(exits, "READY_TIMEOUT_S", 0.3)
    watcher = exits.Watcher(str(tmp_path), PORT)
    watcher.down("rs2")
    watcher.started("rs2", DEAD).join(timeout=5)
    assert state(tmp_path, "rs2") == "0"


def test_the_watcher_reads_the_labels_compose_yaml_sets():
    from lab.render.compose import ADDRESS_LABEL, RESOLVER_LABEL

    assert (exits.LABEL, exits.ADDRESS_LABEL) == (RESOLVER_LABEL, ADDRESS_LABEL)


def test_the_watcher_refuses_bad_usage():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-I", str(REPO / "lab" / "guest" / "dnslab-docker-exits.py")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == "usage: dnslab-docker-exits DIR"
