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


def test_the_guests_config_test_of_a_vrrp_config_needs_no_link_yet(tmp_path):
    """The seed's keepalived.conf names the director's link (VRRP). On a fresh guest that link is made
    by a later step, so the deploy's config test builds it in a throwaway netns; run here for real
    (this machine's keepalived, as root), it passes where the plain test fails."""
    import os
    import shutil

    from lab.model.layout import KEEPALIVED_CONF
    from lab.model.parse import load_lab
    from lab.ops.services import keepalived_test
    from lab.render.files import render_files
    from tests.conftest import REPO

    if os.geteuid() != 0 or not shutil.which("keepalived"):
        pytest.skip("needs root and keepalived")
    seed = load_lab(REPO / "labs" / "seed.toml")
    conf = render_files(seed)[KEEPALIVED_CONF]
    staged = tmp_path / "keepalived.conf"
    staged.write_bytes(conf.content)
    command = keepalived_test(conf, str(staged))
    assert command.startswith("unshare --net sh -c ") and command.endswith(" dl-lb")
    plain = subprocess.run(["unshare", "--net", "keepalived", "--config-test", "--use-file", str(staged)],
                           capture_output=True, text=True)
    assert plain.returncode != 0 and "dl-lb" in plain.stdout + plain.stderr
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    lab_toml = load_lab(REPO / "lab.toml")
    plain_conf = render_files(lab_toml)[KEEPALIVED_CONF]
    assert keepalived_test(plain_conf, "/x") == "keepalived --config-test --use-file /x"


def test_a_vrrp_labs_keepalived_runs_both_subsystems():
    """--check and --vrrp each mean "only this one": Keepalived 2.2.7 given both ran neither ("has no
    configuration to run", an empty IPVS table: the seed preset's first deploy). With VRRP the unit
    passes no subsystem flag; without, --check alone."""
    from lab.model.layout import KEEPALIVED_UNIT
    from lab.model.parse import load_lab
    from lab.render.files import render_files
    from tests.conftest import REPO

    def exec_start(path):
        text = render_files(load_lab(REPO / path))[KEEPALIVED_UNIT].content.decode()
        return text[text.index("ExecStart="):text.index("ExecReload=")].split()

    seed, plain = exec_start("labs/seed.toml"), exec_start("lab.toml")
    assert "--check" not in seed and "--vrrp" not in seed
    assert "--check" in plain and "--vrrp" not in plain
