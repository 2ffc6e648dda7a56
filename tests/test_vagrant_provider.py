"""The vagrant provider without a VM: missing tools, a lab that is not up, down with nothing up."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.config import parse_lab
from lab.errors import LabError
from lab.providers.vagrant import NETNS, VagrantProvider


@pytest.fixture
def provider(raw_lab: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VagrantProvider:
    monkeypatch.setenv("DNSLAB_STATE", str(tmp_path / "state"))
    raw_lab["vm"]["provider"] = "vagrant"
    return VagrantProvider(parse_lab(raw_lab))


def test_missing_vagrant_names_the_debian_packages(provider: VagrantProvider, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no vagrant, virsh or qemu-img on it
    with pytest.raises(LabError, match=r"needs vagrant.*apt-get install vagrant vagrant-libvirt "
                                       r"libvirt-daemon-system dnsmasq-base") as err:
        provider.up()
    assert "\n" not in str(err.value)
    assert not (tmp_path / "state" / "vagrant" / "state.json").exists()


@pytest.mark.skipif(Path(f"/run/netns/{NETNS}").exists(), reason="a vagrant lab is up on this host")
def test_a_lab_that_is_not_up(provider: VagrantProvider):
    with pytest.raises(LabError, match=r"lab is not up; run `fab up`"):
        provider.endpoint()
    with pytest.raises(LabError, match="not up"):
        provider.info()
    provider.down()  # nothing to stop: no error, no namespace made
    assert not provider.netns.exists()
