"""Deploy's failure modes that need no VM."""

from __future__ import annotations

import socket
import subprocess

import pytest

from lab.model.errors import LabError
from lab.model.parse import parse_lab
from lab.ops.deploy import deploy
from lab.ssh.endpoint import Endpoint, connect


@pytest.fixture
def lab(raw_lab):
    return parse_lab(raw_lab, "lab.toml")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_host_is_one_clear_error(lab, tmp_path):
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    conn = connect(Endpoint("127.0.0.1", closed_port(), "root", str(key)), timeout=3)
    with pytest.raises(LabError, match=r"cannot reach the lab host root@127.0.0.1:\d+ over SSH.*fab up"):
        deploy(lab, conn)
