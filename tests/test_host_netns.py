"""A host network namespace: exact membership by namespace inode, stop by PID, the loopback forwarder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from lab.providers.vagrant.host_netns import HostNetns

pytestmark = pytest.mark.integration

ECHO = ("import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', 0)); s.listen(); print(s.getsockname()[1], flush=True)\n"
        "while True:\n c,_=s.accept(); c.sendall(b'inside:' + c.recv(100)); c.close()\n")


@pytest.fixture
def netns():
    ns = HostNetns(f"dnslab-test-{os.getpid()}")
    ns.create()
    yield ns
    ns.delete()


def test_members_are_exactly_the_processes_inside_and_delete_stops_them(netns: HostNetns):
    outside = subprocess.Popen(["sleep", "60"])
    inside = subprocess.Popen(netns.wrap(["sleep", "60"]))
    try:
        deadline = time.monotonic() + 5
        while inside.pid not in netns.member_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert netns.member_pids() == [inside.pid]
        netns.delete()
        assert inside.wait(timeout=5) == -15
        assert not netns.exists() and netns.member_pids() == []
        assert outside.poll() is None
    finally:
        outside.kill()
        outside.wait()


def test_forwarder_reaches_a_server_that_only_exists_inside(netns: HostNetns):
    server = subprocess.Popen(netns.wrap([sys.executable, "-c", ECHO]), stdout=subprocess.PIPE, text=True)
    inner = server.stdout.readline().strip()
    with pytest.raises(ConnectionRefusedError):  # the host's 127.0.0.1 is not the namespace's
        socket.create_connection(("127.0.0.1", int(inner)), timeout=1)
    argv = [sys.executable, "-m", "lab.providers.vagrant.netns_forward", str(netns.path), "127.0.0.1",
            inner]
    forwarder = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    port = int(forwarder.stdout.readline())
    assert forwarder.pid in netns.member_pids()
    for word in (b"one", b"two"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(word)
            assert conn.recv(100) == b"inside:" + word
    netns.delete()
    assert forwarder.wait(timeout=5) < 0 and server.wait(timeout=5) < 0
