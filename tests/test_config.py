"""The lab model: lab.toml parses, and every validation error is one precise line."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Address

import pytest

from lab.config import load_lab, merge, parse_lab, with_overrides
from lab.errors import LabError
from tests.conftest import REPO


def test_repo_lab_parses_to_typed_model(raw_lab):
    lab = parse_lab(raw_lab, "lab.toml")
    assert lab.network.vlan_id == 53
    assert lab.network.lower_link == "eth0.53"
    assert lab.network.vip == IPv4Address("192.168.100.100")
    assert [r.name for r in lab.resolvers] == ["rs1", "rs2", "rs3"]
    assert lab.resolver("rs2").real_server == "192.168.100.12:53"
    assert lab.check.type == "DNS_CHECK"
    assert dict(lab.sysctl)["net.ipv4.vs.conntrack"] == "1"
    assert lab.as_dict()["network"]["vip"] == "192.168.100.100"


def test_model_is_immutable(raw_lab):
    lab = parse_lab(raw_lab)
    with pytest.raises(AttributeError):
        lab.check.delay_loop = 3  # type: ignore[misc]


def test_removal_bound_follows_the_formula(raw_lab):
    raw_lab["check"].update(delay_loop=1.0, connect_timeout=0.5, retry=2, delay_before_retry=0.25)
    assert parse_lab(raw_lab).check.removal_bound_s == pytest.approx(1.0 + 0.5 * 3 + 0.25 * 2)


def test_vlan_off_uses_a_dummy_parent(raw_lab):
    raw_lab["network"]["vlan"] = False
    assert parse_lab(raw_lab).network.lower_link == "dnslab0"


def test_overrides_merge_and_revalidate(raw_lab):
    lab = parse_lab(raw_lab)
    changed = with_overrides(lab, {"check": {"type": "MISC_CHECK"}, "sysctl": {
        "net.ipv4.vs.expire_nodest_conn": 0}})
    assert changed.check.type == "MISC_CHECK"
    assert changed.check.delay_loop == lab.check.delay_loop
    assert dict(changed.sysctl)["net.ipv4.vs.expire_nodest_conn"] == "0"
    assert dict(changed.sysctl)["net.ipv4.vs.conntrack"] == "1"
    with pytest.raises(LabError, match=r"\[check\] type"):
        with_overrides(lab, {"check": {"type": "PING"}})


def test_merge_does_not_touch_its_inputs():
    base = {"a": {"b": 1}}
    assert merge(base, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}
    assert base == {"a": {"b": 1}}


BAD = [
    (("network", "vlan_id", 0), r"\[network\] vlan_id: must be between 1 and 4094"),
    (("network", "vlan_id", 4095), r"\[network\] vlan_id: must be between 1 and 4094"),
    (("network", "vip", "10.0.0.1"), r"\[network\] vip: 10.0.0.1 is not a host address inside"),
    (("network", "vip", "nonsense"), r"\[network\] vip: not an IPv4 address"),
    (("network", "director", "192.168.100.100"), r"\[network\] director: .* already used by vip"),
    (("network", "subnet", "192.168.100.1/24"), r"\[network\] subnet: not an IPv4 network"),
    (("network", "subnet", "8.8.8.0/24"), r"\[network\] subnet: .* not a private range"),
    (("network", "ipvlan_mode", "vepa"), r"\[network\] ipvlan_mode: must be one of l2, l3, l3s"),
    (("network", "keepalived_netns", "host"), r"keepalived_netns: must be one of root, lb"),
    (("check", "type", "PING"), r"\[check\] type: must be one of DNS_CHECK"),
    (("check", "delay_loop", 0), r"\[check\] delay_loop: must be > 0"),
    (("check", "connect_timeout", -1), r"\[check\] connect_timeout: must be > 0"),
    (("check", "retry", "three"), r"\[check\] retry: must be int"),
    (("check", "inhibit_on_failure", 1), r"\[check\] inhibit_on_failure: must be bool"),
    (("check", "colour", "red"), r"\[check\] colour: unknown key; known keys: type"),
    (("vm", "provider", "docker"), r"\[vm\] provider: must be one of qemu, vagrant, ssh"),
    (("vm", "memory_mib", 128), r"\[vm\] memory_mib: must be at least 512"),
    (("vm", "release", "sid"), r"\[vm\] release: must be one of bookworm, trixie, got 'sid'"),
    (("ipvs", "lb_algo", "random"), r"\[ipvs\] lb_algo: must be one of"),
    (("ipvs", "protocols", ["udp", "sctp"]), r"\[ipvs\] protocols: must be a non-empty list"),
    (("load", "tcp_share", 1.5), r"\[load\] tcp_share: must be between 0 and 1"),
    (("load", "socket_mode", "pool"), r"\[load\] socket_mode: must be one of fresh, reuse"),
    (("load", "window", -1), r"\[load\] window: must be between 0 and 60000, got -1"),
    (("load", "client", "bind"), r"\[load\] client: must be one of raw, glibc, musl, got 'bind'"),
    (("load", "timeout_ms", 0), r"\[load\] timeout_ms: must be between 1 and 600000, got 0"),
    (("load", "timeout_ms", -5.0), r"\[load\] timeout_ms: must be between 1 and 600000"),
    (("load", "timeout_ms", float("nan")), r"\[load\] timeout_ms: must be a finite number"),
    (("load", "attempts", 0), r"\[load\] attempts: must be between 1 and 10, got 0"),
    (("load", "attempts", 2.5), r"\[load\] attempts: must be an integer, got 2.5"),
    (("load", "rotate", "yes"), r"\[load\] rotate: must be true or false, got 'yes'"),
    (("load", "nameservers", []), r"\[load\] nameservers: must not be empty"),
    (("load", "nameservers", "vip"), r"\[load\] nameservers: must be a list of strings, got 'vip'"),
    (("load", "nameservers", ["vip", ""]), r"\[load\] nameservers: has an empty item"),
    (("load", "nameservers", ["vip", 53]), r"\[load\] nameservers: must be a list of strings"),
    (("load", "nameservers", ["rs9"]),
     r"\[load\] nameservers: 'rs9' is not vip, a resolver name \(rs1, rs2, rs3\)"),
    (("load", "nameservers", ["8.8.8.8"]), r"\[load\] nameservers: 8.8.8.8 is outside \[network\] subnet"),
    (("load", "nameservers", ["vip", "rs1", "rs2", "rs3"]), r"\[load\] nameservers: at most 3"),
    (("load", "retries", 2), r"\[load\] retries: unknown key; known keys: rate, users"),
    (("sysctl", "kernel.panic", 1), r"\[sysctl\] \"kernel.panic\": not a net.\* sysctl"),
    (("vm", "provider", "ssh"), r"\[ssh\] host: required when \[vm\] provider = \"ssh\""),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[f"{t}.{k}" for (t, k, _), _ in BAD])
def test_every_validation_error_names_file_and_key(raw_lab, change, message):
    table, key, value = change
    raw_lab.setdefault(table, {})[key] = value
    with pytest.raises(LabError, match=message) as err:
        parse_lab(raw_lab, "my-lab.toml")
    text = str(err.value)
    assert text.startswith("my-lab.toml: ")
    assert "\n" not in text


@pytest.mark.parametrize(("load", "message"), [
    ({"client": "glibc", "tcp_share": 0.5}, r"\[load\] tcp_share: must be 0 with client = glibc"),
    ({"client": "glibc", "attempts": 6}, r"\[load\] attempts: glibc allows at most 5, got 6"),
    ({"client": "musl", "timeout_ms": 61000}, r"\[load\] timeout_ms: musl allows at most 60000 ms"),
])
def test_load_settings_that_do_not_go_together_name_a_key(raw_lab, load, message):
    raw_lab["load"].update(load)
    with pytest.raises(LabError, match=message):
        parse_lab(raw_lab, "lab.toml")


def test_nameservers_resolve_to_addresses_inside_the_lab(raw_lab):
    raw_lab["load"].update(client="glibc", nameservers=["vip", "rs2", "192.168.100.99"], rotate=True)
    lab = parse_lab(raw_lab)
    assert lab.load.nameservers == ("vip", "rs2", "192.168.100.99") and lab.load.rotate is True
    assert lab.nameserver_addresses() == ("192.168.100.100", "192.168.100.12", "192.168.100.99")


@pytest.mark.parametrize(
    ("resolvers", "message"),
    [
        ([], r"\[\[resolvers\]\]: at least one resolver is required"),
        ([{"name": "rs1", "address": "192.168.100.11"}, {"name": "rs1", "address":
          "192.168.100.12"}], r"\[resolvers.1\] name: duplicate resolver name 'rs1'"),
        ([{"name": "rs1", "address": "192.168.100.11"}, {"name": "rs2", "address":
          "192.168.100.11"}], r"\[resolvers.1\] address: .* already used by resolver rs1"),
        ([{"name": "rs1", "address": "192.168.100.100"}], r"already used by \[network\] vip"),
        ([{"name": "Bad_Name", "address": "192.168.100.11"}], r"\[resolvers.0\] name: 'Bad_Name'"),
        ([{"name": "rs1"}], r"\[resolvers.0\]: needs both name and address"),
    ],
)
def test_resolver_errors(raw_lab, resolvers, message):
    raw_lab["resolvers"] = resolvers
    with pytest.raises(LabError, match=message):
        parse_lab(raw_lab, "lab.toml")


def test_unknown_resolver_lists_known_names(raw_lab):
    with pytest.raises(LabError, match="no resolver named 'rs9'; known: rs1, rs2, rs3"):
        parse_lab(raw_lab).resolver("rs9")


def test_malformed_toml_and_missing_file(tmp_path):
    bad = tmp_path / "lab.toml"
    bad.write_text("[network\nvip = 1\n")
    with pytest.raises(LabError, match=r"lab.toml: not valid TOML"):
        load_lab(bad)
    with pytest.raises(LabError, match=r"no such lab file"):
        load_lab(tmp_path / "absent.toml")


def test_cli_prints_one_line_and_exits_2(tmp_path):
    bad = tmp_path / "lab.toml"
    bad.write_text((REPO / "lab.toml").read_text().replace("vlan_id = 53", "vlan_id = 9999"))
    proc = subprocess.run([sys.executable, "-m", "lab", "check", "--lab", str(bad)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "[network] vlan_id: must be between 1 and 4094, got 9999" in proc.stderr
    assert "Traceback" not in proc.stderr

