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


def _provider_file():
    from lab.state import state_dir

    return state_dir() / "provider"


def remembered_provider() -> str | None:
    """The provider the running lab was brought up with by `fab up --provider NAME`, if any."""
    path = _provider_file()
    return path.read_text().strip() or None if path.exists() else None


def remember_provider(name: str | None) -> None:
    """Record (or, with None, forget) the provider of the running lab."""
    path = _provider_file()
    if name:
        path.write_text(name + "\n")
    else:
        path.unlink(missing_ok=True)
