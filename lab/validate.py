"""Validate rendered configs with the real tools on this machine, before anything touches the VM."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from lab.errors import LabError
from lab.render import KEEPALIVED_CONF, GuestFile

TOOLS = {"unbound-checkconf": "unbound", "keepalived": "keepalived"}


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not path:
        raise LabError(f"{name} not found on this machine; install the {TOOLS[name]} package (make setup)")
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
        raise LabError(f"{source}: unbound-checkconf rejects the config for resolver {name}: "
                       f"{' | '.join(out.splitlines())}")


def check_keepalived(text: str, source: str) -> None:
    """`keepalived --config-test` on keepalived.conf; LabError with the tool's message on rejection."""
    with tempfile.TemporaryDirectory(prefix="dnslab-check-") as tmp:
        path = Path(tmp) / "keepalived.conf"
        path.write_text(text)
        code, out = _run([_tool("keepalived"), "--config-test", "--use-file", str(path)])
    if code != 0:
        raise LabError(f"{source}: keepalived -t rejects keepalived.conf (exit {code}): "
                       f"{' | '.join(out.replace(str(path), 'keepalived.conf').splitlines())}")


def validate(files: Mapping[str, GuestFile], source: str) -> None:
    """Check every rendered Unbound and Keepalived config with the real tools."""
    for path, file in files.items():
        if path.startswith("/etc/unbound/dnslab/"):
            check_unbound(file.content.decode(), Path(path).stem, source)
    check_keepalived(files[KEEPALIVED_CONF].content.decode(), source)
