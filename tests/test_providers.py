"""Provider selection: the provider a lab was brought up with is remembered for every later task,
whichever task brought it up; a failed start leaves the memory as it was; `down` forgets only its own."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lab import providers
from lab.model.errors import LabError
from lab.model.parse import parse_lab
from lab.providers import bring_up, remember_provider, remembered_provider, take_down
from lab.providers.vagrant import repo as vagrant_repo


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DNSLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(vagrant_repo, "REPO_ROOT", tmp_path / "repo")  # no `vagrant up` machine there
    return tmp_path / "state"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again once the socket is


def test_the_provider_of_a_running_lab_is_remembered(state):
    assert remembered_provider() is None
    remember_provider("vagrant")
    assert remembered_provider() == "vagrant"
    remember_provider(None)
    assert remembered_provider() is None


def test_a_start_that_fails_leaves_the_memory_as_it_was(state, raw_lab):
    raw_lab["vm"]["provider"] = "ssh"
    raw_lab["ssh"].update(host="127.0.0.1", port=closed_port())
    lab = parse_lab(raw_lab)
    with pytest.raises(LabError, match="does not answer SSH"):
        bring_up(lab)
    assert remembered_provider() is None
    remember_provider("qemu")  # a qemu lab that is not running does not block another provider
    with pytest.raises(LabError, match="does not answer SSH"):
        bring_up(lab)
    assert remembered_provider() == "qemu"


def test_down_forgets_only_the_provider_it_stopped(state, raw_lab):
    remember_provider("vagrant")
    take_down(parse_lab(raw_lab))  # lab.toml's qemu: nothing runs, and vagrant stays remembered
    assert remembered_provider() == "vagrant"
    raw_lab["vm"]["provider"] = "ssh"
    raw_lab["ssh"].update(host="127.0.0.1", port=closed_port())
    remember_provider("ssh")
    take_down(parse_lab(raw_lab))
    assert remembered_provider() is None


def test_a_task_on_a_lab_that_is_not_up_names_the_provider_and_the_fix(state, raw_lab):
    with pytest.raises(LabError, match=r"^the qemu lab is not up \(.*\); start it with "
                                       r"`fab up --provider qemu`$"):
        providers.connect_lab(parse_lab(raw_lab))
