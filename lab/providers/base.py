"""What every provider offers: bring the lab host up, say where it answers SSH, stop it."""

from __future__ import annotations

import socket
from typing import Any, Protocol

from lab.endpoint import Endpoint, connect


class Provider(Protocol):
    """A lab host: a VM the provider runs (qemu, vagrant) or an existing machine (ssh)."""

    name: str

    def up(self) -> Endpoint:
        """Start the host (building what it needs) and return its endpoint once SSH answers."""
        ...

    def down(self) -> None:
        """Stop the host and everything started for it; a no-op when it is not up."""
        ...

    def endpoint(self) -> Endpoint:
        """The running host's endpoint; LabError "lab is not up; run `fab up`" when it is not."""
        ...

    def info(self) -> dict[str, Any]:
        """provider, endpoint, image, kernel (`uname -r` over SSH) and accel, as plain data."""
        ...


NOT_UP = "lab is not up; run `fab up`"


def ssh_banner(host: str, port: int, timeout: float) -> bool:
    """True when something at host:port greets like an SSH server (cheap, and quiet, unlike paramiko)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def ssh_answers(endpoint: Endpoint, timeout: float = 5.0) -> bool:
    """True when a real command runs over SSH at the endpoint."""
    if not ssh_banner(endpoint.host, endpoint.port, timeout):
        return False
    try:
        with connect(endpoint, timeout=timeout) as conn:
            return conn.run("true", hide=True, warn=True, timeout=timeout).ok
    except Exception:  # noqa: BLE001 - any failure to connect or to run means "not (yet)"
        return False
