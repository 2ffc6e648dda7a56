"""lab/model/layout.py: the one place for the guest's names and paths, and the copies that cannot import it
(loadtest/ and chaos/check_cost.py run inside the guest; the image recipe is shell) agree with it."""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath

import loadtest
from chaos import check_cost
from lab.model import layout
from lab.model.parse import parse_lab
from lab.render.files import render_files

REPO = Path(__file__).resolve().parent.parent


def test_unit_names_and_namespace_wrapper():
    assert layout.resolver_unit("rs1") == "dnslab-resolver@rs1.service"
    assert layout.RESOLVER_UNIT.endswith("/dnslab-resolver@.service")
    assert layout.in_ns(None, "ipvsadm -Ln") == "ipvsadm -Ln"
    assert layout.in_ns("lb", "ipvsadm -Ln") == "ip netns exec lb ipvsadm -Ln"
    assert layout.in_ns("a b;x", "true") == "ip netns exec 'a b;x' true"


def test_the_wrapper_runs_the_command_in_bash():
    """The root-namespace form is the command itself, run as it is."""
    out = subprocess.run(["bash", "-c", layout.in_ns(None, "echo $((1 + 1))")],
                         capture_output=True, text=True)
    assert out.stdout == "2\n"


def test_deploy_installs_the_loadtest_package_where_the_runner_starts_locust(raw_lab):
    files = render_files(parse_lab(raw_lab, "lab.toml"))
    assert layout.LOCUSTFILE in files, "the runner's locustfile is not among the deployed files"
    assert (REPO / "loadtest" / PurePosixPath(layout.LOCUSTFILE).name).is_file()
    # `env PYTHONPATH=HOME` makes `import loadtest` find the deployed package.
    assert PurePosixPath(layout.LOADTEST_DIR) == PurePosixPath(layout.HOME) / loadtest.__name__
    assert all(path.startswith(("/etc/", "/usr/local/sbin/", layout.LOADTEST_DIR + "/")) for path in files)
    for path in (layout.KEEPALIVED_CONF, layout.RESOLVER_UNIT, layout.RESOLVER_DROPIN, layout.KEEPALIVED_UNIT,
                 layout.SYSCTL_CONF, layout.NETWORK_SCRIPT, layout.EXIT_WATCHER, layout.unbound_path("rs1")):
        assert path in files, path


def test_the_units_name_the_layouts_files(raw_lab):
    files = render_files(parse_lab(raw_lab, "lab.toml"))
    resolver = files[layout.RESOLVER_UNIT].content.decode()
    keepalived = files[layout.KEEPALIVED_UNIT].content.decode()
    assert f"-c {layout.UNBOUND_DIR}/%i.conf" in resolver
    assert f"--pid {layout.KEEPALIVED_PIDFILE} --checkers_pid {layout.CHECKER_PIDFILE}" in keepalived


def test_guest_side_copies_agree():
    """chaos/check_cost.py runs standalone in the guest (stdlib only) and the image's venv is made by
    packer/base/customize.sh: their spellings must be the layout's."""
    assert check_cost.KEEPALIVED_CONF == layout.KEEPALIVED_CONF
    assert check_cost.CHECKER_PIDFILE == layout.CHECKER_PIDFILE
    assert f"python3 -m venv {layout.VENV}" in (REPO / "packer" / "base" / "customize.sh").read_text()
    assert f"{layout.VENV}/bin/python" in (REPO / "packer" / "scripts" / "lab-layer.sh").read_text()
