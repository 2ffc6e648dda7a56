"""Provider selection: the provider a lab was brought up with is remembered for later tasks."""

from __future__ import annotations

from lab.providers import remember_provider, remembered_provider


def test_the_provider_of_a_running_lab_is_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("DNSLAB_STATE", str(tmp_path))
    assert remembered_provider() is None
    remember_provider("vagrant")
    assert remembered_provider() == "vagrant"
    remember_provider(None)
    assert remembered_provider() is None
