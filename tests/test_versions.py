"""The guest's release and tool versions as meta.json records them (lab/versions.py, pure parts)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lab.model.errors import LabError
from lab.model.parse import parse_lab
from lab.versions import describe, parse_versions, require_release, version_of

TRIXIE = """release=trixie
kernel=6.12.57+deb13-amd64
keepalived=Keepalived v2.3.3 (03/30,2025), git commit v2.3.2-57-g2c6e4b2+
unbound=Version 1.26.2
ipvsadm=ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)
"""


def test_versions_are_parsed_from_each_tools_banner():
    assert parse_versions(TRIXIE) == {"release": "trixie", "kernel": "6.12.57+deb13-amd64",
                                      "keepalived": "2.3.3", "unbound": "1.26.2", "ipvsadm": "1.31"}


def test_a_missing_tool_or_line_gives_an_empty_value_not_a_guess():
    text = "release=bookworm\nkernel=6.1.0-57-amd64\nkeepalived=sh: 1: keepalived: not found\n"
    out = parse_versions(text)
    assert out["keepalived"] == "" and out["unbound"] == "" and out["ipvsadm"] == ""
    assert out["kernel"] == "6.1.0-57-amd64"


def test_version_of_takes_the_first_dotted_number():
    assert version_of("Keepalived v2.2.7 (01/16,2022)") == "2.2.7"
    assert version_of("no version here") == ""


def test_describe_names_the_release_and_each_version():
    line = describe(parse_versions(TRIXIE))
    assert line == ("Debian trixie · kernel 6.12.57+deb13-amd64 · Keepalived 2.3.3 · Unbound 1.26.2 · "
                    "ipvsadm 1.31")
    assert describe(None) == "" and describe({}) == ""


class Guest:
    """A connection whose guest says it runs `codename`."""

    user, host, port = "root", "fake", 22

    def __init__(self, codename: str) -> None:
        self.codename = codename

    def run(self, command: str, **_: object) -> SimpleNamespace:
        assert "VERSION_CODENAME" in command
        return SimpleNamespace(exited=0, stdout=f"{self.codename}\n", stderr="")


def test_a_vm_of_another_release_is_refused_in_one_line(raw_lab):
    raw_lab["vm"]["release"] = "trixie"
    lab = parse_lab(raw_lab, "labs/trixie.toml")
    with pytest.raises(LabError, match=r"^labs/trixie.toml: \[vm\] release: the lab VM runs bookworm, not "
                                       r"trixie; .*fab up --lab labs/trixie.toml"):
        require_release(Guest("bookworm"), lab)
    require_release(Guest("trixie"), lab)
    raw_lab["vm"].update(provider="ssh")
    raw_lab.setdefault("ssh", {})["host"] = "real-host"
    require_release(Guest("bookworm"), parse_lab(raw_lab, "labs/trixie.toml"))  # a real host: its own


def test_banners_keep_each_tools_line_and_locusts_version():
    from lab.versions import parse_banners

    text = TRIXIE + "\nlocust=/opt/dnslab/venv/lib/python3.13/site-packages/locust-2.32.4.dist-info\n"
    raw = parse_banners(text)
    assert raw["keepalived"].startswith("Keepalived v2.3.3")
    assert raw["locust"] == "locust 2.32.4"
    assert parse_banners("locust=\n")["locust"] == ""


def test_the_guest_is_read_once_per_connection(monkeypatch):
    from lab import versions

    calls = []

    class Conn:
        pass

    def run(conn, command, **kwargs):
        calls.append(command)
        return type("R", (), {"stdout": TRIXIE})()

    monkeypatch.setattr(versions.remote, "run", run)
    first, second = Conn(), Conn()
    assert versions.guest_versions(first)["release"] == "trixie"
    assert versions.tool_banners(first)["keepalived"].startswith("Keepalived v2.3.3")
    assert len(calls) == 1
    versions.guest_versions(type("Link", (), {"conn": first})())  # a Link over the same connection
    assert len(calls) == 1
    versions.guest_versions(second)
    assert len(calls) == 2
