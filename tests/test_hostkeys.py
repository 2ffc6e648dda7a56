"""Host keys are checked on every connection (lab.ssh.hostkeys), against a real SSH server on loopback
(paramiko's server side, with an ed25519 host key from ssh-keygen) and with OpenSSH's own client
for the command line `fab up` prints."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import paramiko
import pytest

from lab.providers import accept_host_key_of
from lab.providers.qemu import holds_port
from lab.ssh import hostkeys
from lab.ssh.endpoint import Endpoint, connect
from lab.ssh.hostkeys import ALIAS, HostKeyError

ADDRESS = "127.0.0.1"


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class _Server(paramiko.ServerInterface):
    def __init__(self, client_pub: paramiko.PKey) -> None:
        self.client_pub = client_pub
        self.command = threading.Event()

    def check_auth_publickey(self, username, key):
        ok = username == "root" and key == self.client_pub
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def get_allowed_auths(self, username):
        return "publickey"

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_UNKNOWN_CHANNEL_TYPE

    def check_channel_exec_request(self, channel, command):
        def answer():  # after paramiko has acknowledged the request (it does so once this returns)
            time.sleep(0.1)
            channel.sendall(b"0\n" if command == b"id -u" else b"")
            channel.send_exit_status(0)
            channel.close()

        threading.Thread(target=answer, daemon=True).start()
        return True


@pytest.fixture
def server(tmp_path) -> Iterator[SimpleNamespace]:
    """An SSH server on 127.0.0.1:<free port> presenting `host_key`; root logs in with `client_key`."""
    host_key = paramiko.Ed25519Key.from_private_key_file(str(keygen(tmp_path / "host")))
    client = keygen(tmp_path / "client")
    client_pub = paramiko.Ed25519Key.from_private_key_file(str(client))
    listener = socket.create_server((ADDRESS, 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(sock)
            transport.add_server_key(host_key)
            try:
                transport.start_server(server=_Server(client_pub))
            except (paramiko.SSHException, EOFError, OSError):
                continue

    threading.Thread(target=serve, daemon=True).start()
    yield SimpleNamespace(port=port, host_key=host_key, client=client, tmp=tmp_path)
    stop.set()
    listener.close()


def _endpoint(server, **kw) -> Endpoint:
    return Endpoint(ADDRESS, server.port, "root", str(server.client),
                    known_hosts=(str(server.tmp / "known_hosts"),), **kw)


def test_an_unknown_host_key_is_refused_in_one_line_naming_the_fix(server):
    with pytest.raises(HostKeyError) as err, connect(_endpoint(server), timeout=5) as conn:
        conn.run("true")
    message = str(err.value)
    assert message.startswith(f"root@{ADDRESS}:{server.port} presents an unknown host key (ssh-ed25519 "
                              f"{hostkeys.fingerprint(server.host_key)})")
    assert message.endswith("accept it with `fab up --accept-host-key`") and "\n" not in message
    assert not (server.tmp / "known_hosts").exists()


def test_an_accepted_key_is_pinned_and_then_checked(server):
    endpoint = _endpoint(server)
    accept_host_key_of(endpoint)
    pinned = (server.tmp / "known_hosts").read_text()
    assert pinned == f"[{ADDRESS}]:{server.port} ssh-ed25519 {server.host_key.get_base64()}\n"
    with connect(endpoint, timeout=5) as conn:
        assert conn.run("id -u").stdout == "0\n"


def test_another_key_than_the_pinned_one_is_refused_even_when_accepting(server):
    other = paramiko.Ed25519Key.from_private_key_file(str(keygen(server.tmp / "other")))
    endpoint = _endpoint(server)
    hostkeys.pin(server.tmp / "known_hosts", f"[{ADDRESS}]:{server.port}", other)
    with pytest.raises(HostKeyError) as err:
        accept_host_key_of(endpoint)
    message = str(err.value)
    presented = hostkeys.fingerprint(server.host_key)
    assert f"presents host key ssh-ed25519 {presented}, not the one pinned" in message
    assert hostkeys.fingerprint(other) in message and "remove its line from that file" in message
    assert "\n" not in message


def test_a_vm_key_is_pinned_under_the_alias_whatever_the_port(server):
    endpoint = _endpoint(server, host_key_alias=ALIAS)
    hostkeys.pin(server.tmp / "known_hosts", ALIAS, server.host_key)
    with connect(endpoint, timeout=5) as conn:
        assert conn.run("id -u").stdout == "0\n"
    hostkeys.pin(server.tmp / "known_hosts", ALIAS,
                 paramiko.Ed25519Key.from_private_key_file(str(keygen(server.tmp / "other"))))
    with pytest.raises(HostKeyError, match=r"the lab VM is not the one `fab up` started.*`fab down`, "
                                           r"then `fab up`"):
        connect(endpoint, timeout=5).run("true")


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs OpenSSH's client")
def test_the_printed_ssh_command_line_checks_the_key(server):
    endpoint = _endpoint(server, host_key_alias=ALIAS)
    command = ["ssh", "-p", str(server.port), "-i", str(server.client), *hostkeys.ssh_options(endpoint),
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", f"root@{ADDRESS}", "id -u"]
    assert "StrictHostKeyChecking=yes" in command and "StrictHostKeyChecking=no" not in command
    hostkeys.pin(server.tmp / "known_hosts", ALIAS, server.host_key)
    ok = subprocess.run(command, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert ok.returncode == 0 and ok.stdout == "0\n", ok.stderr
    hostkeys.pin(server.tmp / "known_hosts", ALIAS,
                 paramiko.Ed25519Key.from_private_key_file(str(keygen(server.tmp / "other"))))
    refused = subprocess.run(command, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr


def test_fab_up_prints_a_command_line_that_verifies(monkeypatch, capsys, tmp_path):
    import fabfile
    from lab import providers

    endpoint = Endpoint(ADDRESS, 2222, "root", "/k", known_hosts=(str(tmp_path / "known_hosts"),),
                        host_key_alias=ALIAS)
    monkeypatch.setenv("DNSLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(providers, "bring_up", lambda lab, accept_host_key=False: endpoint)
    fabfile.up.body(None)
    out = capsys.readouterr().out
    assert out == (f"lab is up: ssh -p 2222 -i /k -o StrictHostKeyChecking=yes -o UserKnownHostsFile="
                   f"{tmp_path}/known_hosts -o HostKeyAlias={ALIAS} root@{ADDRESS}\n")


def test_accepting_a_key_is_only_for_the_ssh_provider(raw_lab):
    from lab.model.errors import LabError
    from lab.model.parse import parse_lab
    from lab.providers import bring_up

    with pytest.raises(LabError, match="--accept-host-key is for the ssh provider"):
        bring_up(parse_lab(raw_lab), accept_host_key=True)


def test_qemu_pins_only_through_a_port_its_own_process_holds():
    listen = ("import socket, time\ns = socket.create_server(('127.0.0.1', 0))\n"
              "print(s.getsockname()[1], flush=True)\ntime.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", listen], stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())
        assert holds_port(child.pid, port)
        assert not holds_port(child.pid, port + 1 if port < 65535 else port - 1)
        other = subprocess.Popen(["sleep", "60"])
        try:
            assert not holds_port(other.pid, port), "another process does not hold it"
        finally:
            other.kill()
            other.wait()
    finally:
        child.kill()
        child.wait()
