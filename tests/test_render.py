"""Rendering: every rendered config passes the real tools; the important lines are there."""

from __future__ import annotations

import subprocess

import pytest

from lab.__main__ import main as lab_main
from lab.model.errors import LabError
from lab.model.layout import (
    KEEPALIVED_CONF,
    KEEPALIVED_UNIT,
    NETWORK_SCRIPT,
    RESOLVER_UNIT,
    SYSCTL_CONF,
    unbound_path,
)
from lab.model.parse import parse_lab, with_overrides
from lab.ops.services import deploy_steps, file_step
from lab.ops.validate import check_keepalived, validate
from lab.render.files import (
    render_files,
    render_keepalived,
    render_keepalived_unit,
    render_sysctl,
    render_unbound,
)
from lab.render.netplan import network_plan

CHECKS = ["DNS_CHECK", "MISC_CHECK", "UDP_CHECK", "TCP_CHECK"]


@pytest.fixture
def lab(raw_lab):
    return parse_lab(raw_lab, "lab.toml")


def keepalived_test(path) -> subprocess.CompletedProcess:
    return subprocess.run(["keepalived", "--config-test", "--use-file", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_every_unbound_config_passes_unbound_checkconf(lab, tmp_path):
    for resolver in lab.resolvers:
        path = tmp_path / f"{resolver.name}.conf"
        path.write_text(render_unbound(lab, resolver))
        proc = subprocess.run(["unbound-checkconf", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "no errors" in proc.stdout


def test_unbound_config_serves_its_name_on_its_address_only(lab):
    text = render_unbound(lab, lab.resolver("rs2"))
    assert "interface: 192.168.100.12\n" in text
    assert "interface: 192.168.100.11" not in text
    assert "local-data: 'who.lab.test. 0 IN TXT \"rs2\"'" in text
    assert "access-control: 0.0.0.0/0 refuse" in text
    assert "access-control: 192.168.100.0/24 allow" in text
    assert "do-not-query-address: 0.0.0.0/0" in text
    assert 'local-zone: "." refuse' in text


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("netns", ["root", "lb"])
def test_keepalived_config_passes_keepalived_t(lab, tmp_path, check, netns):
    variant = with_overrides(lab, {"check": {"type": check, "misc_tool": "nslookup",
                                             "inhibit_on_failure": True},
                                   "network": {"keepalived_netns": netns},
                                   "ipvs": {"ops": True, "lb_algo": "wlc"}})
    path = tmp_path / "keepalived.conf"
    path.write_text(render_keepalived(variant))
    proc = keepalived_test(path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_keepalived_t_fails_on_a_broken_config(tmp_path):
    """The tool the render tests rely on does reject bad input (exit 5 on 2.2.7)."""
    path = tmp_path / "keepalived.conf"
    path.write_text("virtual_server 192.168.100.100 53 {\n  lb_algo nonsense\n}\n")
    proc = keepalived_test(path)
    assert proc.returncode != 0
    assert "nonsense" in proc.stderr


def test_keepalived_golden_lines_for_the_default_lab(lab):
    text = render_keepalived(lab)
    assert text.count("virtual_server 192.168.100.100 53 {") == 2
    assert "protocol UDP" in text and "protocol TCP" in text
    assert text.count("lb_kind NAT") == 2
    assert text.count("lb_algo rr") == 2
    assert text.count("delay_loop 0.5") == 2
    assert text.count("real_server 192.168.100.11 53 {") == 2
    assert text.count("DNS_CHECK {") == 6
    assert text.count("type TXT") == 6 and text.count("name who.lab.test") == 6
    assert text.count("connect_timeout 0.5") == 6
    assert text.count("retry 1") == 6 and text.count("delay_before_retry 0.5") == 6
    assert "inhibit_on_failure" not in text
    assert "ops" not in text.replace("dnslab", "")


def test_ops_applies_to_udp_only_and_inhibit_to_every_real_server(lab):
    text = render_keepalived(with_overrides(lab, {"ipvs": {"ops": True},
                                                  "check": {"inhibit_on_failure": True}}))
    udp, tcp = text.split("protocol TCP")
    assert "\n    ops\n" in udp and "\n    ops\n" not in tcp
    assert text.count("inhibit_on_failure") == 6


def test_fractional_timers_are_rendered_as_given(lab):
    text = render_keepalived(with_overrides(lab, {"check": {
        "delay_loop": 0.2, "retry": 3, "delay_before_retry": 0.1, "connect_timeout": 0.3}}))
    assert "delay_loop 0.2" in text and "retry 3" in text
    assert "delay_before_retry 0.1" in text and "connect_timeout 0.3" in text


@pytest.mark.parametrize("tool", ["dig", "nslookup"])
def test_misc_check_runs_the_seed_tool_bounded_by_connect_timeout(lab, tool):
    text = render_keepalived(with_overrides(lab, {"check": {"type": "MISC_CHECK", "misc_tool": tool}}))
    udp, tcp = text.split("protocol TCP")
    assert f'misc_path "/usr/bin/timeout 0.5 /usr/bin/{tool} ' in udp
    assert "192.168.100.13" in udp
    assert ("+tcp" if tool == "dig" else "-vc") in tcp
    assert ("+tcp" if tool == "dig" else "-vc") not in udp
    assert "misc_timeout 2" in text


def test_only_configured_protocols_get_virtual_servers(lab):
    text = render_keepalived(with_overrides(lab, {"ipvs": {"protocols": ["udp"]}}))
    assert "protocol UDP" in text and "protocol TCP" not in text


def test_keepalived_unit_runs_in_the_director_namespace(lab):
    root = render_keepalived_unit(lab)
    lb = render_keepalived_unit(with_overrides(lab, {"network": {"keepalived_netns": "lb"}}))
    assert "NetworkNamespacePath" not in root
    assert "NetworkNamespacePath=/run/netns/lb" in lb
    for text in (root, lb):
        assert "--dont-fork" in text and "--log-console" in text
        assert "ExecReload=/bin/kill -HUP $MAINPID" in text


def test_resolver_unit_runs_unbound_in_its_namespace(lab):
    text = render_files(lab)[RESOLVER_UNIT].content.decode()
    assert "NetworkNamespacePath=/run/netns/%i" in text
    assert "ExecStart=/usr/sbin/unbound -d -p -c /etc/unbound/dnslab/%i.conf" in text


def test_sysctl_file_lists_the_director_sysctls(lab):
    text = render_sysctl(lab)
    assert "net.ipv4.vs.conntrack = 1\n" in text
    assert "net.ipv4.ip_forward = 1\n" in text
    assert "net.ipv4.vs.expire_nodest_conn = 1\n" in text


def test_render_command_writes_every_file_at_its_guest_path(lab, tmp_path, capsys):
    assert lab_main(["render", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    for guest in (KEEPALIVED_CONF, KEEPALIVED_UNIT, RESOLVER_UNIT, SYSCTL_CONF, NETWORK_SCRIPT,
                  unbound_path("rs1"), unbound_path("rs3")):
        assert str(tmp_path / guest.lstrip("/")) in printed
        assert (tmp_path / guest.lstrip("/")).is_file()
    script = tmp_path / NETWORK_SCRIPT.lstrip("/")
    assert script.stat().st_mode & 0o111
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    proc = subprocess.run(["keepalived", "--config-test", "--use-file",
                           str(tmp_path / KEEPALIVED_CONF.lstrip("/"))], capture_output=True)
    assert proc.returncode == 0


def test_validate_passes_the_default_lab(lab):
    validate(render_files(lab), lab.source)


def test_validate_reports_the_tools_message(lab):
    bad = render_keepalived(lab).replace("lb_algo rr", "lb_algo bogus", 1)
    with pytest.raises(LabError, match=r"lab.toml: keepalived -t rejects .*Invalid lvs_scheduler 'bogus'"):
        check_keepalived(bad, "lab.toml")


def test_deploy_script_is_valid_bash_and_validates_keepalived_in_the_guest(lab, tmp_path):
    from lab.render.files import render_script

    files = render_files(lab)
    steps = deploy_steps(lab, files, network_plan(lab))
    script = tmp_path / "deploy.sh"
    script.write_text(render_script(lab, steps, title="t", script="deploy.sh"))
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "keepalived --config-test" in file_step(KEEPALIVED_CONF, files[KEEPALIVED_CONF]).apply
    assert "--config-test" not in file_step(SYSCTL_CONF, files[SYSCTL_CONF]).apply
    names = [s.name for s in steps]
    assert names[0].startswith("runtime: no compose-runtime stack")  # the other runtime is not up
    assert names[1].startswith("network: previous topology")
    assert names[-1].startswith("ready:")
    assert names.index("systemd: unit files loaded") > max(
        i for i, n in enumerate(names) if n.startswith("file "))


def test_step_script_runs_checks_applies_and_undoes_in_order(lab, tmp_path):
    """The step protocol itself, run for real on files in a temp dir."""
    from lab.render.files import render_script
    from lab.render.netplan import Step

    marker = tmp_path / "m"
    steps = [
        Step("first", f"[ -e {marker}1 ]", f"touch {marker}1", f"rm -f {marker}1"),
        Step("second", f"[ -e {marker}2 ]", f"touch {marker}2", f"rm -f {marker}2"),
        Step("broken", "false", "echo boom >&2; false"),
        Step("never", "false", f"touch {marker}3"),
    ]
    script = tmp_path / "s.sh"
    script.write_text(render_script(lab, steps, title="t", script="s.sh"))
    (tmp_path / "m1").touch()
    up = subprocess.run(["bash", str(script), "up"], capture_output=True, text=True)
    assert up.returncode == 1
    assert up.stdout.splitlines() == ["@@ ok first", "@@ changed second", "@@ failed broken", "boom"]
    assert not (tmp_path / "m3").exists()
    down = subprocess.run(["bash", str(script), "down"], capture_output=True, text=True)
    assert down.stdout.splitlines() == ["@@ ok never", "@@ ok broken", "@@ changed second",
                                        "@@ changed first"]
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m2").exists()
