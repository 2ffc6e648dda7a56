"""What every provider offers: bring the lab host up, say where it answers SSH, stop it."""

from __future__ import annotations

import socket
from typing import Any, Protocol

from lab.ssh.endpoint import Endpoint, connect


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
        """The running host's endpoint; LabError(not_up(name)) when it is not up."""
        ...

    def info(self) -> dict[str, Any]:
        """provider, endpoint, image, kernel (`uname -r` over SSH) and accel, as plain data."""
        ...


def not_up(provider: str, looked: str = "") -> str:
    """The one-line error for a task that needs a running lab: which lab it looked for, how to start it."""
    where = f" ({looked})" if looked else ""
    return f"the {provider} lab is not up{where}; start it with `fab up --provider {provider}`"


def ssh_problem(endpoint: Endpoint, timeout: float = 5.0, *, accept_new_host_key: bool = False) -> str | None:
    """Why a real command does not run over SSH at the endpoint yet, or None when it does. A host key
    that does not match the pinned one is no reason to wait: its HostKeyError is raised."""
    from lab.ssh.hostkeys import HostKeyError

    try:  # a bare greeting check first: cheap, and quiet where paramiko logs tracebacks
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as sock:
            if not sock.recv(4).startswith(b"SSH-"):
                return "no SSH greeting yet"
    except OSError as err:
        return f"no SSH greeting yet ({err})"
    try:
        with connect(endpoint, timeout=timeout, accept_new_host_key=accept_new_host_key) as conn:
            result = conn.run("true", hide=True, warn=True, timeout=timeout, in_stream=False)
    except HostKeyError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever fails, the caller reports it and retries
        return " ".join(f"{type(err).__name__}: {err}".split())[:200]
    return None if result.ok else f"`true` exited {result.exited}"


def ssh_answers(endpoint: Endpoint, timeout: float = 5.0, *, accept_new_host_key: bool = False) -> bool:
    """True when a real command runs over SSH at the endpoint."""
    return ssh_problem(endpoint, timeout, accept_new_host_key=accept_new_host_key) is None
