"""The one SSH endpoint type every provider yields, and a Fabric connection to it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.errors import LabError


@dataclass(frozen=True)
class Endpoint:
    """Where the lab host answers SSH."""

    host: str
    port: int
    user: str
    key: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Endpoint:
        return cls(**json.loads(text))


def connect(endpoint: Endpoint, timeout: float = 10.0):  # -> fabric.Connection
    """A Fabric Connection to the endpoint (key auth only, no agent, no host-key prompts)."""
    from fabric import Config, Connection

    if endpoint.key and not Path(endpoint.key).exists():
        raise LabError(f"SSH key {endpoint.key} does not exist; run `fab up` to create it")
    run_defaults = {"hide": True, "warn": False, "in_stream": False}  # never read the caller's stdin
    config = Config(overrides={"load_ssh_configs": False, "run": run_defaults})
    kwargs = {"allow_agent": False, "look_for_keys": not endpoint.key,
              "banner_timeout": timeout, "auth_timeout": timeout}
    if endpoint.key:
        kwargs["key_filename"] = [endpoint.key]
    return Connection(host=endpoint.host, port=endpoint.port, user=endpoint.user, config=config,
                      connect_timeout=timeout, connect_kwargs=kwargs)
