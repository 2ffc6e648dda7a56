"""The vagrant provider without a VM: missing tools, a lab that is not up, down with nothing up, and a
machine of a plain `vagrant up` in the repo root (found, or refused in one line)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lab.local.state import ensure_key
from lab.model.config import REPO_ROOT
from lab.model.errors import LabError
from lab.model.parse import parse_lab
from lab.providers import remembered_provider
from lab.providers.vagrant import box
from lab.providers.vagrant import repo as vagrant_repo
from lab.providers.vagrant.provider import NETNS, VagrantProvider

NO_VAGRANT_LAB = pytest.mark.skipif(Path(f"/run/netns/{NETNS}").exists(), reason="a vagrant lab is up here")


@pytest.fixture
def provider(raw_lab: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VagrantProvider:
    monkeypatch.setenv("DNSLAB_STATE", str(tmp_path / "state"))
    raw_lab["vm"]["provider"] = "vagrant"
    return VagrantProvider(parse_lab(raw_lab))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of what `vagrant up` reads in the repo root, standing in for it."""
    root = tmp_path / "repo"
    (root / "packer" / "box").mkdir(parents=True)
    for name in ("Vagrantfile", "lab.toml", "packer/box/authorize-root.sh"):
        shutil.copy(REPO_ROOT / name, root / name)
    monkeypatch.setattr(vagrant_repo, "REPO_ROOT", root)
    return root


def made_by_vagrant_up(root: Path, box_name: str | None, provider: str = "libvirt") -> Path:
    """What `vagrant up` leaves in ROOT/.vagrant for a machine it created from `box_name`."""
    data = root / ".vagrant" / "machines" / "default" / provider
    data.mkdir(parents=True, exist_ok=True)
    (data / "id").write_text("5f0c1e9a-0000-4000-8000-000000000000")
    if box_name:
        (data / "box_meta").write_text(json.dumps({"name": box_name, "version": "0", "provider": provider}))
    return data


def test_missing_vagrant_names_the_debian_packages(provider: VagrantProvider, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no vagrant, virsh or qemu-img on it
    with pytest.raises(LabError, match=r"needs vagrant.*apt-get install vagrant vagrant-libvirt "
                                       r"libvirt-daemon-system dnsmasq-base") as err:
        provider.up()
    assert "\n" not in str(err.value)
    assert not (tmp_path / "state" / "vagrant" / "state.json").exists()


@NO_VAGRANT_LAB
def test_a_lab_that_is_not_up_names_the_provider_and_how_to_start_it(provider: VagrantProvider, repo: Path):
    with pytest.raises(LabError, match=r"^the vagrant lab is not up \(.*\); start it with "
                                       r"`fab up --provider vagrant`$") as err:
        provider.endpoint()
    assert "\n" not in str(err.value)
    with pytest.raises(LabError, match="not up"):
        provider.info()
    provider.down()  # nothing to stop: no error, no namespace made
    assert not provider.netns.exists()


def test_no_machine_in_the_repo_root_until_vagrant_up_made_one(repo: Path):
    assert vagrant_repo.find() is None
    (repo / ".vagrant" / "machines" / "default" / "libvirt").mkdir(parents=True)  # destroyed: no id
    assert vagrant_repo.find() is None
    made_by_vagrant_up(repo, box.BOX_NAME)
    machine = vagrant_repo.find()
    assert (machine.name, machine.provider, machine.root) == ("default", "libvirt", repo)


def test_a_machine_of_vagrant_up_makes_the_tasks_use_vagrant(repo: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DNSLAB_STATE", str(tmp_path / "state"))
    assert remembered_provider() is None
    made_by_vagrant_up(repo, box.BOX_NAME)
    assert remembered_provider() == "vagrant"


@NO_VAGRANT_LAB
@pytest.mark.parametrize("box_name", ["debian/bookworm64", None])
def test_a_machine_not_made_from_the_lab_box_is_refused_in_one_line(provider, repo: Path, box_name):
    made_by_vagrant_up(repo, box_name, provider="virtualbox")
    with pytest.raises(LabError) as err:
        provider.endpoint()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"the Vagrant machine `default` (virtualbox) in {repo} was made from box "
                              f"{box_name or '(unknown)'}, not the lab's dnslab/bookworm;")
    with pytest.raises(LabError, match="not the lab's dnslab/bookworm"):
        provider.up()  # checked before anything is built or started


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("vagrant") is None, reason="needs vagrant")
@NO_VAGRANT_LAB
def test_a_machine_of_the_lab_box_that_ssh_config_cannot_reach_says_so(provider, repo: Path):
    """Real `vagrant ssh-config` on a machine whose libvirt is not there (as on this host)."""
    made_by_vagrant_up(repo, box.BOX_NAME)
    with pytest.raises(LabError, match=r": the lab's key .*/ssh/id_ed25519 is missing; `vagrant provision` "):
        provider.endpoint()
    ensure_key()
    with pytest.raises(LabError) as err:
        provider.endpoint()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"the Vagrant machine `default` (libvirt) in {repo}: `vagrant ssh-config` "
                              "failed (")
    assert message.endswith("is it up? `vagrant up` starts it")
    with pytest.raises(LabError, match=r"exists \(made by `vagrant up`\): the tasks use it as it is"):
        provider.up()
