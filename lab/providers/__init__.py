"""Providers of the lab host, chosen by `[vm] provider` in lab.toml."""

from __future__ import annotations

from lab.config import Lab
from lab.providers.base import Provider


def get_provider(lab: Lab) -> Provider:
    """The provider named by lab.vm.provider: qemu (built in), vagrant or ssh."""
    if lab.vm.provider == "qemu":
        from lab.providers.qemu import QemuProvider

        return QemuProvider(lab)
    if lab.vm.provider == "ssh":
        from lab.providers.ssh import SSHProvider

        return SSHProvider(lab)
    from lab.providers.vagrant import VagrantProvider

    return VagrantProvider(lab)
