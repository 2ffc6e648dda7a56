"""The seed's Keepalived and Unbound settings as lab settings: parsed and refused in one line, rendered,
and accepted by the real keepalived -t / unbound-checkconf (a VRRP config in a throwaway namespace)."""

from __future__ import annotations

import pytest

from lab.model.errors import LabError
from lab.model.layout import KEEPALIVED_UNIT
from lab.model.parse import parse_lab, with_overrides
from lab.ops.services import ready_step
from lab.ops.validate import check_keepalived, check_unbound, validate
from lab.render.files import (
    render_files,
    render_keepalived,
    render_unbound,
)
from lab.render.netplan import network_plan

SEED_CHECK = {"type": "MISC_CHECK", "misc_command": "/usr/bin/nslookup -type=a {name} {rs}",
              "misc_timeout": 1, "retry": 0, "delay_loop": 1, "delay_before_retry": 1}


@pytest.fixture
def lab(raw_lab):
    return parse_lab(raw_lab, "lab.toml")


@pytest.mark.parametrize("vrrp", [False, True])
@pytest.mark.parametrize("netns", ["root", "lb"])
@pytest.mark.parametrize("protocols", [["udp"], ["udp", "tcp"]])
def test_seed_settings_pass_keepalived_t(lab, vrrp, netns, protocols):
    variant = with_overrides(lab, {"vrrp": {"enabled": vrrp, "virtual_router_id": 51, "priority": 150},
                                   "ipvs": {"lvs_timeouts": True, "udp_timeout": 15, "protocols": protocols},
                                   "network": {"keepalived_netns": netns}, "check": SEED_CHECK})
    check_keepalived(render_keepalived(variant), "lab.toml")  # raises with the tool's message
    validate(render_files(variant), "lab.toml")  # unbound-checkconf and systemd-analyze too


def test_keepalived_t_in_the_namespace_still_rejects_a_bad_vrrp_instance(lab):
    text = render_keepalived(with_overrides(lab, {"vrrp": {"enabled": True}}))
    assert "virtual_router_id 51\n" in text
    with pytest.raises(LabError, match=r"keepalived -t rejects keepalived.conf"):
        check_keepalived(text.replace("virtual_router_id 51", "virtual_router_id 300"), "lab.toml")


def test_rendered_keepalived_carries_the_seed_settings(lab):
    variant = with_overrides(lab, {"vrrp": {"enabled": True, "virtual_router_id": 7, "priority": 99,
                                            "advert_int": 2},
                                   "ipvs": {"lvs_timeouts": True, "udp_timeout": 15}, "check": SEED_CHECK})
    text = render_keepalived(variant)
    assert "    lvs_timeouts tcp 900 tcpfin 120 udp 15\n" in text
    block = text[text.index("vrrp_instance dnslab {"):text.index("virtual_server")]
    for line in ("state MASTER", "interface dl-lb", "virtual_router_id 7", "priority 99", "advert_int 2",
                 "192.168.100.100/32 dev dl-lb"):
        assert f"    {line}\n" in block
    for rs in variant.resolvers:
        assert f'misc_path "/usr/bin/nslookup -type=a www.lab.test {rs.address}"\n' in text
    assert text.count("misc_timeout 1\n") == 2 * len(variant.resolvers)
    assert "checkers and a VRRP instance" in text


def test_defaults_render_no_vrrp_and_no_lvs_timeouts(lab):
    text = render_keepalived(lab)
    assert "vrrp_instance" not in text and "lvs_timeouts" not in text
    unit = render_files(lab)[KEEPALIVED_UNIT].content.decode()
    assert "--check \\\n" in unit and "--vrrp" not in unit


def test_with_vrrp_keepalived_holds_the_vip_not_the_network_plan(lab):
    plain = [s.name for s in network_plan(lab)]
    assert any("(VIP)" in name for name in plain)
    variant = with_overrides(lab, {"vrrp": {"enabled": True}})
    assert not any("(VIP)" in s.name for s in network_plan(variant))
    unit = render_files(variant)[KEEPALIVED_UNIT].content.decode()
    words = unit[unit.index("ExecStart="):unit.index("ExecReload=")].split()
    assert "--check" not in words and "--vrrp" not in words  # each means "only this one": both run
    assert "--vrrp_pid /run/dnslab-keepalived-vrrp.pid" in unit
    assert "inet 192.168.100.100/32 " in ready_step(variant).check
    assert "inet 192.168.100.100/32 " not in ready_step(lab).check


def test_misc_command_default_keeps_the_built_in_tools(lab):
    variant = with_overrides(lab, {"check": {"type": "MISC_CHECK", "misc_tool": "nslookup"}})
    text = render_keepalived(variant)
    assert ('misc_path "/usr/bin/timeout 0.5 /usr/bin/nslookup -timeout=1 -retry=0 -type=TXT '
            'who.lab.test ') in text
    assert "misc_timeout 2\n" in text  # connect_timeout 0.5 rounded up + 1


def test_unbound_settings_render_and_pass_checkconf(lab):
    variant = with_overrides(lab, {"unbound": {"num_threads": 2, "cache_min_ttl": 600}})
    text = render_unbound(variant, variant.resolvers[0])
    assert "    num-threads: 2\n    cache-min-ttl: 600\n    cache-max-ttl: 86400\n" in text
    check_unbound(text, "rs1", "lab.toml")
    assert "    num-threads: 1\n    cache-min-ttl: 0\n" in render_unbound(lab, lab.resolvers[0])


BAD = [
    ({"check": {"misc_command": "/usr/bin/nslookup {rs}; reboot"}}, r"\[check\] misc_command: 'reboot'|"
     r"\[check\] misc_command: '\{rs\};'"),
    ({"check": {"misc_command": "/usr/bin/nslookup $(id) {rs}"}}, r"\[check\] misc_command: '\$\(id\)'"),
    ({"check": {"misc_command": "/usr/bin/nslookup 'a b' {rs}"}}, r"\[check\] misc_command: "),
    ({"check": {"misc_command": "/usr/bin/nslookup {name} {rs}\n"}}, r"\[check\] misc_command: "),
    ({"check": {"misc_command": "/usr/bin/nslookup  {rs}"}}, r"\[check\] misc_command: words separated"),
    ({"check": {"misc_command": "nslookup {rs}"}}, r"\[check\] misc_command: 'nslookup' is not an absolute"),
    ({"check": {"misc_command": "/usr/../bin/sh {rs}"}}, r"\[check\] misc_command: .* absolute"),
    ({"check": {"misc_command": "/usr/bin/nslookup {name} 192.168.100.11"}}, r"must name \{rs\}"),
    ({"check": {"misc_command": "/usr/bin/nslookup {host} {rs}"}}, r"'\{host\}' is neither"),
    ({"check": {"misc_name": "google.com"}}, r"\[check\] misc_name: 'google.com' is not a name in the lab"),
    ({"check": {"misc_name": "www.lab.test.evil"}}, r"\[check\] misc_name: "),
    ({"check": {"misc_timeout": -1}}, r"\[check\] misc_timeout: must be >= 0"),
    ({"vrrp": {"priority": 0}}, r"\[vrrp\] priority: must be between 1 and 255, got 0"),
    ({"vrrp": {"virtual_router_id": 256}}, r"\[vrrp\] virtual_router_id: must be between 1 and 255"),
    ({"vrrp": {"advert_int": 0.5}}, r"\[vrrp\] advert_int: must be a whole number"),
    ({"vrrp": {"state": "BACKUP"}}, r"\[vrrp\] state: unknown key; known keys: enabled, virtual_router_id"),
    ({"vrrp": {"enabled": "yes"}}, r"\[vrrp\] enabled: must be true or false"),
    ({"unbound": {"num_threads": 0}}, r"\[unbound\] num_threads: must be > 0"),
    ({"unbound": {"cache_min_ttl": 900, "cache_max_ttl": 600}}, r"\[unbound\] cache_min_ttl: 900 is above"),
    ({"unbound": {"msg_cache_size": "64m"}}, r"\[unbound\] msg_cache_size: unknown key"),
    ({"ipvs": {"lvs_timeouts": 1}}, r"\[ipvs\] lvs_timeouts: must be true or false"),
    ({"check": {"quorum": 0}}, r"\[check\] quorum: Keepalived accepts 1 or more"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD)
def test_bad_seed_settings_get_one_line_naming_file_and_key(lab, overrides, message):
    with pytest.raises(LabError) as err:
        with_overrides(lab, overrides, "labs/x.toml")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("labs/x.toml: [")
    assert __import__("re").search(message, text), text
