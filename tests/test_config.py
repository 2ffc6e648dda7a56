"""The lab model: lab.toml parses into a typed, immutable model; overrides merge and revalidate.

Every validation error's exact text: tests/golden/errors/lab.txt (tests/test_golden_errors.py)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from lab.model.errors import LabError
from lab.model.parse import merge, parse_lab, with_overrides


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


def test_nameservers_resolve_to_addresses_inside_the_lab(raw_lab):
    raw_lab["load"].update(client="glibc", nameservers=["vip", "rs2", "192.168.100.99"], rotate=True)
    lab = parse_lab(raw_lab)
    assert lab.load.nameservers == ("vip", "rs2", "192.168.100.99") and lab.load.rotate is True
    assert lab.nameserver_addresses() == ("192.168.100.100", "192.168.100.12", "192.168.100.99")


def test_unknown_resolver_lists_known_names(raw_lab):
    with pytest.raises(LabError, match="no resolver named 'rs9'; known: rs1, rs2, rs3"):
        parse_lab(raw_lab).resolver("rs9")
