"""Validate rendered configs with the real tools on this machine, before anything touches the VM."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from lab.model.errors import ConfigError
from lab.model.layout import (
    KEEPALIVED,
    KEEPALIVED_CONF,
    KEEPALIVED_UNIT,
    RESOLVER_DROPIN,
    RESOLVER_UNIT,
    UNBOUND_DIR,
    resolver_unit,
)
from lab.render.files import GuestFile

TOOLS = {"unbound-checkconf": "unbound", "keepalived": "keepalived", "systemd-analyze": "systemd"}


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not path:
        raise ConfigError(f"{name} not found on this machine; install the {TOOLS[name]} package (make setup)")
    return path


def _run(argv: list[str]) -> tuple[int, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode, (proc.stderr + proc.stdout).strip()


def check_unbound(text: str, name: str, source: str) -> None:
    """`unbound-checkconf` on one resolver's config; LabError with the tool's message on rejection."""
    with tempfile.TemporaryDirectory(prefix="dnslab-check-") as tmp:
        path = Path(tmp) / f"{name}.conf"
        path.write_text(text)
        code, out = _run([_tool("unbound-checkconf"), str(path)])
    if code != 0:
        raise ConfigError(f"{source}: unbound-checkconf rejects the config for resolver {name}: "
                          f"{' | '.join(out.splitlines())}")


def check_keepalived(text: str, source: str) -> None:
    """`keepalived --config-test` on keepalived.conf; LabError with the tool's message on rejection."""
    with tempfile.TemporaryDirectory(prefix="dnslab-check-") as tmp:
        path = Path(tmp) / "keepalived.conf"
        path.write_text(text)
        code, out = _run([_tool("keepalived"), "--config-test", "--use-file", str(path)])
    if code != 0:
        raise ConfigError(f"{source}: keepalived -t rejects keepalived.conf (exit {code}): "
                          f"{' | '.join(out.replace(str(path), 'keepalived.conf').splitlines())}")


def check_units(files: Mapping[str, GuestFile], instance: str, source: str) -> None:
    """`systemd-analyze verify` on the resolver unit (instance `instance`, with its removal-on-exit
    drop-in) and the Keepalived unit; LabError with every warning it prints, which it does not
    count as failures."""
    with tempfile.TemporaryDirectory(prefix="dnslab-units-") as tmp:
        for path in (RESOLVER_UNIT, RESOLVER_DROPIN, KEEPALIVED_UNIT):
            target = Path(tmp) / Path(path).relative_to(Path(RESOLVER_UNIT).parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files[path].content)
        units = [resolver_unit(instance), KEEPALIVED]
        proc = subprocess.run([_tool("systemd-analyze"), "verify", *units], capture_output=True,
                              text=True, timeout=60, check=False, env={"SYSTEMD_UNIT_PATH": f"{tmp}:",
                                                                       "PATH": "/usr/bin:/bin"})
        out = (proc.stderr + proc.stdout).strip().replace(tmp, "/etc/systemd/system")
    if proc.returncode != 0 or out:
        raise ConfigError(f"{source}: systemd-analyze verify rejects the units: "
                          f"{' | '.join(out.splitlines())}")


def validate(files: Mapping[str, GuestFile], source: str) -> None:
    """Check every rendered Unbound and Keepalived config, and the units when systemd-analyze is
    there, with the real tools."""
    for path, file in files.items():
        if path.startswith(f"{UNBOUND_DIR}/"):
            check_unbound(file.content.decode(), Path(path).stem, source)
    check_keepalived(files[KEEPALIVED_CONF].content.decode(), source)
    if shutil.which("systemd-analyze"):
        check_units(files, Path(next(p for p in files if p.startswith(f"{UNBOUND_DIR}/"))).stem,
                    source)
