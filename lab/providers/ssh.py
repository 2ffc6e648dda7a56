"""An existing Linux host with IPVS, named in lab.toml [ssh]: nothing to start or stop."""

from __future__ import annotations

from typing import Any

from lab.model.config import Lab
from lab.model.errors import ActionFailed
from lab.providers.base import ssh_answers
from lab.ssh.endpoint import Endpoint, connect
from lab.ssh.hostkeys import known_hosts_path


class SSHProvider:
    """The lab host is lab.ssh; up() only checks that it answers."""

    name = "ssh"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def endpoint(self) -> Endpoint:
        """The [ssh] host; its key must be in the lab's known_hosts or the user's (lab.ssh.hostkeys)."""
        s = self.lab.ssh
        return Endpoint(host=s.host, port=s.port, user=s.user, key=s.key,
                        known_hosts=(str(known_hosts_path()), "~/.ssh/known_hosts"))

    def up(self) -> Endpoint:
        endpoint = self.endpoint()
        if not ssh_answers(endpoint, timeout=10.0):
            where = f"{endpoint.user}@{endpoint.host}:{endpoint.port}"
            raise ActionFailed(f"{self.lab.source}: [ssh] {where} does not answer SSH with that key; "
                               "check host, port, user and key")
        return endpoint

    def down(self) -> None:
        """Nothing to stop: the host is not ours (`fab teardown` removes what deploy made)."""

    def info(self) -> dict[str, Any]:
        endpoint = self.endpoint()
        with connect(endpoint) as conn:
            kernel = conn.run("uname -r", hide=True, in_stream=False).stdout.strip()
        return {"provider": self.name, "endpoint": f"{endpoint.user}@{endpoint.host}:{endpoint.port}",
                "image": "(existing host)", "kernel": kernel, "accel": "n/a"}
