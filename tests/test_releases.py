"""`fab matrix --releases`: the option's parsing and its refusals before any VM boots."""

from __future__ import annotations

import pytest

from chaos.releases import parse_releases, run_releases
from lab.model.errors import LabError
from lab.model.parse import parse_lab


def test_releases_are_parsed_in_order():
    assert parse_releases("trixie,bookworm") == ("trixie", "bookworm")
    assert parse_releases(" bookworm ") == ("bookworm",)


@pytest.mark.parametrize(("text", "message"), [
    ("bookworm,sid", r"--releases: 'sid' is not a guest release; allowed: bookworm, trixie"),
    ("", r"--releases: '' is not a guest release"),
    ("trixie,trixie", r"--releases: 'trixie,trixie' names a release twice"),
])
def test_bad_releases_are_one_line(text, message):
    with pytest.raises(LabError, match=message) as err:
        parse_releases(text)
    assert "\n" not in str(err.value)


def test_releases_need_the_qemu_provider(raw_lab):
    raw_lab["vm"]["provider"] = "ssh"
    raw_lab.setdefault("ssh", {})["host"] = "real-host"
    with pytest.raises(LabError, match=r"lab.toml: \[vm\] provider: --releases .* not ssh"):
        run_releases(parse_lab(raw_lab, "lab.toml"), "quick", ("bookworm",))


def test_releases_refuse_a_lab_that_is_up(raw_lab, tmp_path, monkeypatch):
    from lab.providers import qemu

    monkeypatch.setattr(qemu.QemuProvider, "pid", lambda self: 4242)
    with pytest.raises(LabError, match=r"a lab VM is up: .*`fab down` first"):
        run_releases(parse_lab(raw_lab, "lab.toml"), "quick", ("bookworm", "trixie"))
