"""The compose runtime, rendered: `python -m lab render` of a lab with [stack] runtime = "compose" writes a
compose.yaml in the operator's layout that docker-compose 1.29 accepts (offline, no daemon), plus the
files it mounts, which the real tools accept; bad runtime settings are refused in one line."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys

import pytest
import yaml

from lab.model.layout import COMPOSE_DIR, container_name
from lab.model.parse import load_lab, with_overrides
from lab.ops.validate import check_keepalived, check_unbound
from lab.render.compose import (
    ADDRESS_LABEL,
    CONFIG_LABEL,
    EXIT_SCRIPT,
    INIT_SCRIPT,
    RESOLVER_LABEL,
    compose_files,
)
from tests.conftest import REPO

COMPOSE = {"stack": {"runtime": "compose", "restart": "unless-stopped", "client_dns": "docker"},
           "network": {"ipvlan_mode": "l3"}}  # bookworm's Docker 20.10 has no l3s


@pytest.fixture(scope="module")
def seed():
    return with_overrides(load_lab(REPO / "labs" / "seed.toml"), COMPOSE)


@pytest.fixture(scope="module")
def project(seed, tmp_path_factory):
    """`python -m lab render` of the seed preset under compose: the project directory."""
    lab_file = tmp_path_factory.mktemp("lab") / "seed-compose.toml"
    stack = 'runtime = "compose"\nrestart = "unless-stopped"\nclient_dns = "docker"'
    text = (REPO / "labs" / "seed.toml").read_text().replace('runtime = "systemd"', stack).replace(
        'ipvlan_mode = "l3s"', 'ipvlan_mode = "l3"')
    lab_file.write_text(text)
    out = tmp_path_factory.mktemp("out")
    proc = subprocess.run([sys.executable, "-m", "lab", "render", "--lab", str(lab_file), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out / COMPOSE_DIR.lstrip("/")


def compose(project, *args) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker-compose", "-p", "dnslab", *args], capture_output=True, text=True,
                          cwd=project, timeout=120, env={**os.environ, "DOCKER_HOST": "unix:///nonexistent"})


def test_docker_compose_accepts_the_rendered_project(project):
    proc = compose(project, "config", "-q")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in project.rglob("*") if p.is_file()) == sorted(
        ["compose.yaml", "rs1.conf", "rs2.conf", "keepalived.conf", "sysctl.conf", INIT_SCRIPT])


def test_docker_compose_rejects_a_broken_project(project, tmp_path):
    """The check the test above relies on can fail."""
    doc = yaml.safe_load((project / "compose.yaml").read_text())
    doc["services"]["rs1"]["restart"] = ["not", "a", "policy"]
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(doc))
    assert compose(tmp_path, "config", "-q").returncode != 0


def test_compose_yaml_follows_the_operators_layout(project):
    normal = yaml.safe_load(compose(project, "config").stdout)  # as docker-compose reads it
    nets, svc = normal["networks"], normal["services"]
    dnsnet = nets["dnsnet"]
    assert dnsnet["driver"] == "ipvlan"
    assert dnsnet["driver_opts"] == {"parent": "eth0.53", "ipvlan_mode": "l3"}
    assert dnsnet["ipam"]["config"] == [{"subnet": "192.168.100.0/24"}]
    assert set(nets) == {"dnsnet"}  # no egress bridge: no internet, and Docker 20.10 fails on two
    assert set(svc) == {"init", "keepalived", "rs1", "rs2", "client"}
    for name, address in (("rs1", "192.168.100.2"), ("rs2", "192.168.100.3")):
        rs = svc[name]
        assert rs["image"] == "dnslab/stack:bookworm" and rs["restart"] == "unless-stopped"
        assert rs["container_name"] == container_name(name) == f"dnslab-{name}"
        conf = (project / "unbound" / f"{name}.conf").read_bytes()
        assert rs["labels"] == {CONFIG_LABEL: hashlib.sha256(conf).hexdigest(),  # changed: recreated
                                RESOLVER_LABEL: name, ADDRESS_LABEL: address}  # read by the exit watcher
        assert rs["networks"]["dnsnet"]["ipv4_address"] == address
        assert set(rs["networks"]) == {"dnsnet"}
    ka = svc["keepalived"]
    assert ka["network_mode"] == "host"
    assert sorted(ka["cap_add"]) == ["NET_ADMIN", "NET_BROADCAST", "NET_RAW"]
    assert ka["depends_on"] == {"init": {"condition": "service_completed_successfully"},
                                "rs1": {"condition": "service_started"},
                                "rs2": {"condition": "service_started"}}
    assert "--check" not in ka["command"]  # the seed's VRRP instance runs too
    init = svc["init"]
    assert init["privileged"] is True and init["network_mode"] == "host"
    assert init["command"] == [f"/{INIT_SCRIPT}"]
    assert init["environment"]["DNSLAB_HOST_LINK"] == "dnsnet-host"
    assert init["environment"]["DNSLAB_HOST_CIDR"] == "192.168.100.254/24"
    client = svc["client"]
    assert client["networks"]["dnsnet"]["ipv4_address"] == "192.168.100.200"
    assert client["dns"] == ["192.168.100.100"]  # no public fallback
    assert client["environment"]["DNSLAB_NAMESERVER"] == "127.0.0.11"
    images = {s["image"] for s in svc.values()}
    assert images == {"dnslab/stack:bookworm"}  # one local image (the lab image's import), no registry


def test_the_mounted_files_pass_the_real_tools(seed, project):
    conf = (project / "keepalived.conf").read_text()
    assert "192.168.100.100/32 dev eth0.53" in conf and "interface eth0.53" in conf
    assert "lvs_timeouts tcp 900 tcpfin 120 udp 15" in conf
    check_keepalived(conf, "seed")  # in a throwaway namespace holding eth0.53
    for name in ("rs1", "rs2"):
        check_unbound((project / "unbound" / f"{name}.conf").read_text(), name, "seed")
    script = project / INIT_SCRIPT
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
    assert "net.ipv4.vs.conntrack = 1" in (project / "sysctl.conf").read_text()


def test_without_vrrp_keepalived_runs_checkers_only_and_the_init_script_adds_the_vip(seed):
    plain = with_overrides(seed, {"vrrp": {"enabled": False}, "stack": {"restart": "no"}})
    doc = yaml.safe_load(compose_files(plain)[f"{COMPOSE_DIR}/compose.yaml"].content)
    assert doc["services"]["keepalived"]["command"][-1] == "--check"
    assert doc["services"]["init"]["environment"]["DNSLAB_VIP_BY_VRRP"] == "0"
    assert doc["services"]["rs1"]["restart"] == "no"


def test_removal_on_exit_adds_the_exit_watch_service_that_keepalived_waits_for(seed, tmp_path):
    """Its container form: a service following Docker's events with the socket read-only, the files made
    by the init container before Keepalived reads them; docker-compose accepts the project."""
    from lab.model.layout import EXIT_DIR, exit_file

    lab = with_overrides(seed, {"check": {"removal_on_exit": True}})
    files = compose_files(lab)
    doc = yaml.safe_load(files[f"{COMPOSE_DIR}/compose.yaml"].content)
    watch = doc["services"]["exit-watch"]
    assert watch["network_mode"] == "host" and watch["pid"] == "host" and watch["restart"] == "unless-stopped"
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in watch["volumes"]
    assert watch["command"] == ["python3", f"/{EXIT_SCRIPT}", EXIT_DIR]
    assert doc["services"]["keepalived"]["depends_on"]["exit-watch"] == {"condition": "service_started"}
    made = doc["services"]["init"]["environment"]["DNSLAB_EXIT_FILES"]
    assert made == f"{exit_file('rs1')} {exit_file('rs2')}"
    assert files[f"{COMPOSE_DIR}/{EXIT_SCRIPT}"].mode == 0o755
    assert "track_file dnslab_exit_rs1" in files[f"{COMPOSE_DIR}/keepalived.conf"].content.decode()
    for path, file in files.items():
        (tmp_path / path.rsplit("/", 1)[-1]).write_bytes(file.content)
    assert compose(tmp_path, "config", "-q").returncode == 0
    plain = yaml.safe_load(compose_files(seed)[f"{COMPOSE_DIR}/compose.yaml"].content)
    assert "exit-watch" not in plain["services"]


L3 = {"ipvlan_mode": "l3"}  # the seed's l3s is not a mode of bookworm's Docker
BAD = [
    ({"stack": {"runtime": "docker"}}, "[stack] runtime: must be one of systemd, compose, got 'docker'"),
    ({"stack": {"restart": "always"}}, "[stack] restart: only the compose runtime reads it"),
    ({"stack": {"client_dns": "docker"}}, "[stack] client_dns: only the compose runtime reads it"),
    ({"stack": {"runtime": "compose", "restart": "sometimes"}}, "[stack] restart: must be one of no, always"),
    ({"stack": {"runtime": "compose"}, "network": {"keepalived_netns": "lb", **L3}},
     "[network] keepalived_netns: the compose runtime runs Keepalived on the host network"),
    ({"stack": {"runtime": "compose"}, "network": {"vlan": False, **L3}},
     "[network] vlan: the compose runtime"),
    ({"stack": {"runtime": "compose"}}, "[network] ipvlan_mode: \"l3s\" is not a mode of bookworm's Docker"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD)
def test_bad_runtime_settings_get_one_line_before_anything_is_written(raw_lab, tmp_path, overrides, message):
    from lab.model.parse import merge

    lab_file = tmp_path / "bad.toml"
    lab_file.write_text(_toml(merge(raw_lab, overrides)))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lab", "render", "--lab", str(lab_file), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith(f"dnslab: error: {lab_file}: {message}"), proc.stderr
    assert not out.exists()


def _toml(data: dict, prefix: str = "") -> str:
    """A small TOML writer for the lab's shapes (tables, arrays of tables, scalars, lists)."""
    import json

    scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list) or
               (isinstance(v, list) and not (v and isinstance(v[0], dict)))}
    lines = [f"{json.dumps(k) if '.' in k else k} = {json.dumps(v)}" for k, v in scalars.items()]
    for key, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{prefix}{key}]", _toml(value, f"{prefix}{key}.")]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                lines += ["", f"[[{prefix}{key}]]", _toml(item)]
    return "\n".join(lines)
