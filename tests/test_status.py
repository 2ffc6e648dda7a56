"""Status parsing on text captured from the lab VM (rs3 SIGKILLed, Keepalived removed it)."""

from __future__ import annotations

import pytest

from lab.model.parse import parse_lab
from lab.ops.status import format_status, parse_status

from .conftest import REPO

CAPTURED = (REPO / "tests" / "data" / "status-rs3-killed.txt").read_text()


@pytest.fixture
def data(raw_lab):
    return parse_status(parse_lab(raw_lab, "lab.toml"), CAPTURED)


def test_ipvs_table_has_weights_and_connection_counts(data):
    assert [(s["proto"], s["scheduler"], s["flags"]) for s in data["ipvs"]] == [
        ("tcp", "rr", []), ("udp", "rr", [])]
    assert [rs["real_server"] for rs in data["ipvs"][1]["real_servers"]] == [
        "192.168.100.11:53", "192.168.100.12:53"]
    assert data["ipvs"][0]["real_servers"][0] == {
        "real_server": "192.168.100.11:53", "forward": "Masq", "weight": 1,
        "active_conns": 0, "inactive_conns": 0}
    assert data["ipvs_timeouts"] == {"tcp": 900, "tcpfin": 120, "udp": 300}


def test_check_state_comes_from_keepalived_log(data):
    states = {(c["resolver"], c["proto"]): c["state"] for c in data["checks"]}
    assert states == {("rs1", "udp"): "up", ("rs2", "udp"): "up", ("rs3", "udp"): "down",
                      ("rs1", "tcp"): "up", ("rs2", "tcp"): "up", ("rs3", "tcp"): "down"}
    rs3 = next(c for c in data["checks"] if c["resolver"] == "rs3" and c["proto"] == "udp")
    assert rs3["in_ipvs"] is False and rs3["weight"] is None
    assert rs3["last_event"].endswith("Removing service [192.168.100.13]:udp:53 from VS "
                                      "[192.168.100.100]:udp:53")


def test_units_and_sysctls(data):
    assert data["units"]["rs3"] == "failed"  # dnslab-resolver@rs3.service
    assert data["units"]["keepalived"] == "active"
    assert data["sysctl"]["net.ipv4.vs.conntrack"] == "1"
    assert data["sysctl"]["net.ipv4.vs.sync_threshold"] == "3 50"
    assert len([k for k in data["sysctl"] if k.startswith("net.ipv4.vs.")]) == 27


def test_format_status_shows_every_part(data):
    text = format_status(data)
    assert "IPVS in the root namespace (VIP 192.168.100.100)" in text
    assert "192.168.100.12:53" in text and "Masq" in text
    assert "rs3" in text and "down" in text and "failed" in text
    assert "net.ipv4.vs.expire_nodest_conn" in text
    assert "udp=300s" in text


def test_removal_on_exit_shows_what_each_unit_told_keepalived(raw_lab):
    raw_lab["check"]["removal_on_exit"] = True
    text = CAPTURED + "=== dnslab: exit\nrs1 0\nrs2 0\nrs3 1\n"
    data = parse_status(parse_lab(raw_lab, "lab.toml"), text)
    rs3 = next(c for c in data["checks"] if c["resolver"] == "rs3")
    assert rs3["exit_file"] == "1" and rs3["check"] == "DNS_CHECK + FILE_CHECK"
    table = format_status(data)
    assert "1 exited" in table and "0 running" in table
    assert {c["exit_file"] for c in parse_status(parse_lab(raw_lab | {"check": {}}, "lab.toml"),
                                                 text)["checks"]} == {None}
