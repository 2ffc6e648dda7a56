#!/usr/bin/python3
"""dnslab Docker exit watcher: removal on exit for the compose runtime.

compose.yaml's `exit-watch` service runs it (host network and PID namespace, Docker's socket read-only,
/run/dnslab):

    dnslab-docker-exits DIR

It follows Docker's events for the containers labelled `dnslab.resolver` and writes DIR/NAME.down,
the file Keepalived watches (track_file + FILE_CHECK). When a resolver container starts it opens a
pidfd on the container's process (Docker's State.Pid) and writes 1 the instant that process exits,
as the systemd form's watcher does: Docker's own `die` event comes only after the daemon has cleaned
up the task (~1.6 s after the crash under TCG). `die` (any exit, also one the pidfd missed) and a
`kill` with SIGTERM or SIGKILL (`docker stop` / `docker kill`: before the process has exited) write 1
too. It writes 0 once a started resolver answers DNS on its address (the label `dnslab.address`), as
the systemd form writes 0 once Unbound is ready. An exit while a start is still being probed wins:
the probe's 0 is dropped. At its own start it writes every resolver container's current state, and
it exits when Docker's event stream ends (its restart policy brings it back). Stdlib only.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import struct
import sys
import threading
import time
import urllib.parse
from typing import Any

DOCKER_SOCKET = "/var/run/docker.sock"
LABEL = "dnslab.resolver"
ADDRESS_LABEL = "dnslab.address"
DNS_PORT = 53
READY_TIMEOUT_S = 120.0  # a container start takes ~10 s under TCG; then the regular check decides
PROBE_INTERVAL_S = 0.1
GONE_SIGNALS = ("9", "15")  # `kill` events that end the resolver: SIGKILL, SIGTERM (docker stop)


class DockerConnection(http.client.HTTPConnection):
    """HTTP to Docker's API over its Unix socket."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.socket_path)
        self.sock = sock


def docker_get(socket_path: str, path: str, query: dict[str, Any]) -> http.client.HTTPResponse:
    """GET `path` of Docker's API; SystemExit in one line when Docker says no."""
    conn = DockerConnection(socket_path)
    conn.request("GET", f"{path}?{urllib.parse.urlencode(query)}")
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"dnslab-docker-exits: Docker's API answered {response.status} to {path}")
    return response


def answers(address: str, port: int = DNS_PORT, timeout_s: float = 0.5) -> bool:
    """True when `address` answers a DNS query (any answer: REFUSED means Unbound listens too)."""
    ident = os.getpid() & 0xFFFF
    query = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + b"\x00" + struct.pack(">HH", 2, 1)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout_s)
            sock.sendto(query, (address, port))
            reply = sock.recv(512)
    except OSError:
        return False
    return len(reply) >= 12 and reply[:2] == query[:2]


def verdict(event: dict[str, Any]) -> str | None:
    """What an event means for its resolver: "down", "started" or None (nothing to do)."""
    action = event.get("Action") or event.get("status") or ""
    attributes = (event.get("Actor") or {}).get("Attributes") or {}
    if action == "die" or (action == "kill" and attributes.get("signal") in GONE_SIGNALS):
        return "down"
    if action == "start":
        return "started"
    return None


def container_pid(socket_path: str, container_id: str) -> int:
    """The container's process on the host (0 when it does not run), from Docker's inspect."""
    info = json.load(docker_get(socket_path, f"/containers/{urllib.parse.quote(container_id)}/json", {}))
    return int((info.get("State") or {}).get("Pid") or 0)


class Watcher:
    """The status files in `directory`, one writer per resolver at a time."""

    def __init__(self, directory: str, port: int = DNS_PORT, socket_path: str = DOCKER_SOCKET) -> None:
        self.directory = directory
        self.port = port
        self.socket_path = socket_path
        self.lock = threading.Lock()
        self.generation: dict[str, int] = {}

    def mark(self, name: str, value: int) -> None:
        """Write the file whole (temp file, rename): Keepalived never reads half of it."""
        path = os.path.join(self.directory, f"{name}.down")
        with open(f"{path}.tmp", "w") as f:
            f.write(f"{value}\n")
        os.replace(f"{path}.tmp", path)

    def down(self, name: str, why: str = "down", generation: int | None = None) -> None:
        """1 for `name`; given `generation`, only while no newer event came for it."""
        with self.lock:
            if generation is not None and self.generation.get(name) != generation:
                return
            self.generation[name] = self.generation.get(name, 0) + 1
            self.mark(name, 1)
        print(f"{name}: {why}", flush=True)

    def started(self, name: str, address: str | None, container_id: str | None = None) -> threading.Thread:
        """Watch the started resolver's process and probe it in the background; 0 once it answers,
        unless it exited since."""
        with self.lock:
            self.generation[name] = generation = self.generation.get(name, 0) + 1
        probe = threading.Thread(target=self._ready, args=(name, address, container_id, generation),
                                 daemon=True)
        probe.start()
        return probe

    def _watch_exit(self, name: str, container_id: str, generation: int) -> None:
        """1 the instant the container's process exits (a pidfd: no polling), unless a newer event came."""
        try:
            pid = container_pid(self.socket_path, container_id)
            fd = os.pidfd_open(pid) if pid > 0 else -1
        except (OSError, ValueError, SystemExit) as err:
            print(f"{name}: no pidfd ({err}); Docker's die event will tell", flush=True)
            return
        if fd < 0:
            return
        try:
            select.select([fd], [], [])
        finally:
            os.close(fd)
        self.down(name, "exited", generation)

    def _ready(self, name: str, address: str | None, container_id: str | None, generation: int) -> None:
        if container_id:
            threading.Thread(target=self._watch_exit, args=(name, container_id, generation),
                             daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while address and time.monotonic() < deadline and not answers(address, self.port):
            if self.generation.get(name) != generation:
                return
            time.sleep(PROBE_INTERVAL_S)
        with self.lock:
            if self.generation.get(name) != generation:
                return
            self.mark(name, 0)
        print(f"{name}: ready", flush=True)

    def handle(self, event: dict[str, Any]) -> None:
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        name = attributes.get(LABEL)
        what = verdict(event)
        if not name or what is None:
            return
        if what == "down":
            self.down(name, event.get("Action") or "down")
        else:
            self.started(name, attributes.get(ADDRESS_LABEL), (event.get("Actor") or {}).get("ID"))


def watch(directory: str, socket_path: str = DOCKER_SOCKET, port: int = DNS_PORT) -> int:
    """Follow Docker's events until the stream ends (then 1: the restart policy brings it back)."""
    os.makedirs(directory, exist_ok=True)
    watcher = Watcher(directory, port, socket_path)
    labelled = json.dumps({"label": [LABEL]})
    events = docker_get(socket_path, "/events", {"filters": json.dumps(
        {"type": ["container"], "label": [LABEL], "event": ["start", "kill", "die"]})})
    listing = docker_get(socket_path, "/containers/json", {"all": "1", "filters": labelled})
    for container in json.load(listing):
        labels = container.get("Labels") or {}
        if container.get("State") == "running":
            watcher.started(labels[LABEL], labels.get(ADDRESS_LABEL), container.get("Id"))
        else:
            watcher.down(labels[LABEL])
    print("following Docker's events", flush=True)
    while line := events.readline():
        if line.strip():
            watcher.handle(json.loads(line))
    print("dnslab-docker-exits: Docker's event stream ended", file=sys.stderr, flush=True)
    return 1


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: dnslab-docker-exits DIR", file=sys.stderr)
        return 2
    return watch(sys.argv[1])


if __name__ == "__main__":
    sys.exit(main())
