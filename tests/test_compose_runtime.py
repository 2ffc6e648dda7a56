"""The compose runtime's pure parts: the presets (labs/compose.toml, labs/seed-compose.toml and the
`extends` key they use), the deploy's steps and runner script, the chaos layout, the health checks and the
status of a compose lab, and the one-line refusals of settings the runtime cannot honour."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chaos import actions
from chaos.experiment import parse_experiment
from lab.model.errors import ConfigError, ExperimentError
from lab.model.parse import load_lab, with_overrides
from lab.ops.compose_steps import compose_health_checks, compose_preamble, compose_steps
from lab.ops.deploy import plan
from lab.ops.status import SECTION, parse_status
from lab.render.files import render_script
from tests.conftest import REPO

COMPOSE_LAB = REPO / "labs" / "compose.toml"
SEED_COMPOSE = REPO / "labs" / "seed-compose.toml"


@pytest.fixture(scope="module")
def compose():
    return load_lab(COMPOSE_LAB)


@pytest.fixture(scope="module")
def seed_compose():
    return load_lab(SEED_COMPOSE)


def test_the_presets_extend_their_bases(compose, seed_compose):
    base, seed = load_lab(REPO / "lab.toml"), load_lab(REPO / "labs" / "seed.toml")
    assert compose.stack.runtime == "compose" and compose.stack.restart == "unless-stopped"
    assert compose.resolvers == base.resolvers and compose.check == base.check  # lab.toml's settings
    assert compose.network.ipvlan_mode == "l3" and base.network.ipvlan_mode == "l3s"
    assert seed_compose.check == seed.check and seed_compose.vrrp == seed.vrrp  # the seed's settings
    assert seed_compose.nameserver_addresses() == ("127.0.0.11",)  # Docker's embedded DNS
    assert str(seed_compose.source).endswith("seed-compose.toml")


def _lab_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ('extends = "/etc/passwd.toml"\n', 'extends: must name a lab file relative to this one'),
    ('extends = 3\n', 'extends: must name a lab file relative to this one'),
    ('extends = "self.toml"\n', 'extends: self.toml extends this file again (a cycle)'),
    ('extends = "missing.toml"\n', 'missing.toml: no such lab file'),
])
def test_a_bad_extends_is_one_line(tmp_path, text, message):
    path = _lab_file(tmp_path, "self.toml", text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_lab(path)


def test_extends_merges_tables_key_by_key(tmp_path):
    shutil.copy(REPO / "lab.toml", tmp_path / "base.toml")
    path = _lab_file(tmp_path, "child.toml", 'extends = "base.toml"\n[check]\ndelay_loop = 2\n')
    lab, base = load_lab(path), load_lab(tmp_path / "base.toml")
    assert lab.check.delay_loop == 2 and lab.check.type == base.check.type and lab.ipvs == base.ipvs


@pytest.mark.parametrize(("overrides", "message"), [
    ({"network": {"ipvlan_mode": "l3s"}},
     r'\[network\] ipvlan_mode: "l3s" is not a mode of bookworm\'s Docker ipvlan driver \(docker.io 20.10\)'),
    ({"load": {"nameservers": ["docker"]}, "stack": {"runtime": "systemd"}},
     r'\[load\] nameservers: "docker" \(Docker\'s embedded DNS server\) needs \[stack\] runtime = "compose"'),
])
def test_settings_the_runtime_cannot_honour_are_one_line(compose, overrides, message):
    lab = load_lab(REPO / "lab.toml") if overrides.get("stack") else compose
    with pytest.raises(ConfigError, match=message):
        with_overrides(lab, overrides)


def test_trixie_docker_takes_l3s(compose):
    assert with_overrides(compose, {"vm": {"release": "trixie"}, "network": {"ipvlan_mode": "l3s"}})


def test_the_trixie_preset_is_the_recommended_compose_lab_with_the_seeds_l3s():
    trixie = load_lab(REPO / "labs" / "trixie-compose.toml")
    exit_lab = load_lab(REPO / "labs" / "compose-exit.toml")
    assert (trixie.vm.release, trixie.network.ipvlan_mode, trixie.stack) == ("trixie", "l3s", exit_lab.stack)
    assert trixie.check == exit_lab.check and trixie.check.removal_on_exit
    _, steps, _ = plan(trixie)
    assert any(s.name.startswith("docker: image dnslab/stack:trixie") for s in steps)


def test_deploy_plan_orders_the_steps(compose):
    files, steps, _ = plan(compose)
    names = [s.name for s in steps]
    order = ["runtime: no systemd", "sysctl ", "docker: daemon", "docker: image dnslab/stack:bookworm",
             "resolver rs1: container not paused", "file /opt/dnslab/compose/compose.yaml",
             "file /etc/systemd/system/docker.service.d/50-dnslab-cpu.conf",
             "docker: daemons at CPU weight 1",
             "host: VLAN link eth0.53 up with the host's address 192.168.100.1/32", "host: the init",
             "compose: project up", "keepalived: its container", "netns rs1", "netns client", "ready:"]
    at = [next(i for i, n in enumerate(names) if n.startswith(prefix)) for prefix in order]
    assert at == sorted(at), names
    assert "/opt/dnslab/loadtest/dns.py" in files  # the load generator runs in the client's namespace
    dropin = files["/etc/systemd/system/containerd.service.d/50-dnslab-cpu.conf"].content.decode()
    assert "[Service]\nCPUWeight=1\n" in dropin  # Docker's daemons yield the CPU to the data path
    without = [s.name for s in plan(compose, clear_faults=False)[1]]
    assert not any("not paused" in n for n in without)  # a deploy within an experiment leaves pauses be


def test_the_runner_script_is_valid_bash(compose, tmp_path):
    files, steps, shell = plan(compose)
    script = tmp_path / "deploy.sh"
    script.write_text(render_script(compose, steps, title="t", script="deploy.sh", preamble=shell))
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "compose up -d --remove-orphans" in script.read_text()
    assert shell == compose_preamble(compose, files) and "docker compose" in shell  # v1 or v2


def test_a_compose_lab_s_steps_take_no_systemd_units(compose):
    text = "\n".join(f"{s.check}\n{s.apply}\n{s.undo}" for s in compose_steps(compose, plan(compose)[0]))
    assert "systemctl restart" not in text and "dnslab-resolver@" not in text


def test_chaos_acts_on_containers_under_compose(compose):
    t = actions.Target(conn=None, lab=compose)
    assert t.layout.pids == "docker" and t.layout.resolver_unit.format(name="rs1") == "dnslab-rs1"
    assert t.layout.keepalived_unit == "dnslab-keepalived"
    assert actions.Target(conn=None, lab=load_lab(REPO / "lab.toml")).layout == actions.Layout()
    with pytest.raises(ExperimentError, match="need the systemd runtime"):
        actions.netem(t, resolver="rs1", delay_ms=10)


def test_a_link_fault_under_compose_is_refused_before_the_run(compose):
    data = {"title": "t", "method": [{"type": "action", "name": "down", "provider": {
        "type": "python", "module": "chaos.ctk.actions", "func": "link_down",
        "arguments": {"resolver": "rs1"}}}]}
    with pytest.raises(ExperimentError, match="link_down acts on the resolver's link, which needs the "
                                              "systemd runtime"):
        parse_experiment(data, compose)


def test_health_checks_of_a_compose_lab_name_the_containers(compose):
    names = [name for name, _ in compose_health_checks(compose)]
    assert "container dnslab-rs2 running" in names and "container dnslab-keepalived running" in names
    assert "resolver rs3: container not paused" in names
    assert any(n.startswith("netns client") for n in names)


def test_status_of_a_compose_lab(compose):
    text = "\n".join([
        "@@section ipvs", "UDP  192.168.100.100:53 rr", "  -> 192.168.100.11:53 Masq 1 0 0",
        "@@section units", "dnslab-rs1 running", "dnslab-rs2 paused", "dnslab-rs3 exited",
        "dnslab-keepalived running", "@@section journal",
    ])
    data = parse_status(compose, text.replace("@@section ", f"{SECTION} "))
    assert data["runtime"] == "compose"
    assert data["units"] == {"rs1": "running", "rs2": "paused", "rs3": "exited", "keepalived": "running"}


def test_lab_render_of_the_recommended_compose_lab(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lab", "render", "--lab", str(COMPOSE_LAB), "--out",
                           str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    project = tmp_path / "opt" / "dnslab" / "compose"
    assert sorted(p.name for p in project.iterdir()) == [
        "compose.yaml", "dnslab-compose-init.sh", "keepalived.conf", "sysctl.conf", "unbound"]
    assert "DNS_CHECK" in (project / "keepalived.conf").read_text()
