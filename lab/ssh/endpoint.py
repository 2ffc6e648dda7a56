"""The one SSH endpoint type every provider yields, and a Fabric connection to it that checks the
host key (lab.ssh.hostkeys)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.model.errors import GuestUnreachable


@dataclass(frozen=True)
class Endpoint:
    """Where the lab host answers SSH, and where its host key is pinned (known_hosts files, and the
    name the key is pinned under when not `[host]:port`)."""

    host: str
    port: int
    user: str
    key: str
    known_hosts: tuple[str, ...] = ()
    host_key_alias: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Endpoint:
        data = json.loads(text)
        data["known_hosts"] = tuple(data.get("known_hosts") or ())
        return cls(**data)


def connect(endpoint: Endpoint, timeout: float = 10.0, *, accept_new_host_key: bool = False):
    """A Fabric Connection to the endpoint: key auth only, no agent, and the host key checked against
    the pinned one (an unknown key is pinned only with `accept_new_host_key`, else refused)."""
    from fabric import Config, Connection

    from lab.ssh.hostkeys import PinnedClient

    if endpoint.key and not Path(endpoint.key).exists():
        raise GuestUnreachable(f"SSH key {endpoint.key} does not exist; run `fab up` to create it")
    run_defaults = {"hide": True, "warn": False, "in_stream": False}  # never read the caller's stdin
    config = Config(overrides={"load_ssh_configs": False, "run": run_defaults})
    kwargs = {"allow_agent": False, "look_for_keys": not endpoint.key,
              "banner_timeout": timeout, "auth_timeout": timeout}
    if endpoint.key:
        kwargs["key_filename"] = [endpoint.key]
    conn = Connection(host=endpoint.host, port=endpoint.port, user=endpoint.user, config=config,
                      connect_timeout=timeout, connect_kwargs=kwargs)
    conn.client = PinnedClient(endpoint, accept_new_host_key)  # Fabric's own accepts any key
    return conn
