"""Validate rendered configs with the real tools, before anything of the lab changes: this machine's
tools when the guest runs the same Debian release, else the guest release's own tools in the guest."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from lab.model.config import Lab
from lab.model.errors import ConfigError
from lab.model.layout import (
    EXIT_DIR,
    KEEPALIVED,
    KEEPALIVED_CONF,
    KEEPALIVED_UNIT,
    RESOLVER_DROPIN,
    RESOLVER_UNIT,
    UNBOUND_DIR,
    exit_file,
    resolver_unit,
)
from lab.render.files import GuestFile
from lab.ssh import remote

GUEST_CHECK_DIR = "/run/dnslab-check"
OS_RELEASE = Path("/etc/os-release")
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


# The links a VRRP instance names (`interface X`, `... dev X`): keepalived -t wants them to exist.
_LINK_RE = re.compile(r"^\s*(?:interface\s+(\S+)|\S+\s+dev\s+(\S+))\s*$", re.M)
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
# Run by sh in a throwaway network namespace (here also a user namespace; in the guest's deploy
# lab.ops.services): a veth per link named, then the config test.
IN_NETNS = ('k=$1 f=$2; shift 2; i=0; for l in "$@"; do ip link add "$l" type veth peer name "p$i" '
            '&& ip link set "$l" up || exit 97; i=$((i + 1)); done; exec "$k" --config-test --use-file "$f"')


def config_links(text: str) -> list[str]:
    """The network links keepalived.conf names, in order, once each."""
    links = [a or b for a, b in _LINK_RE.findall(text)]
    return list(dict.fromkeys(link for link in links if _IFNAME_RE.fullmatch(link)))


def check_keepalived(text: str, source: str) -> None:
    """`keepalived --config-test` on keepalived.conf; LabError with the tool's message on rejection.
    A config naming links (a VRRP instance) is tested in a throwaway user and network namespace
    holding links of those names, as the guest does: the host has none of the lab's links."""
    with tempfile.TemporaryDirectory(prefix="dnslab-check-") as tmp:
        path = Path(tmp) / "keepalived.conf"
        path.write_text(text)
        argv = [_tool("keepalived"), "--config-test", "--use-file", str(path)]
        links = config_links(text)
        if links:
            argv = ["unshare", "--user", "--map-root-user", "--net", "sh", "-c", IN_NETNS, "sh",
                    argv[0], str(path), *links]
        code, out = _run(argv)
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
    _check_units_here(files, source)


def resolver_names(files: Mapping[str, GuestFile]) -> list[str]:
    """The resolvers whose Unbound configs are among the rendered files."""
    return [Path(p).stem for p in files if p.startswith(f"{UNBOUND_DIR}/")]


def _check_units_here(files: Mapping[str, GuestFile], source: str) -> None:
    """check_units with the first resolver as the instance, when systemd-analyze is there."""
    if shutil.which("systemd-analyze"):
        check_units(files, resolver_names(files)[0], source)


def host_release(os_release: Path = OS_RELEASE) -> str:
    """This machine's Debian codename (VERSION_CODENAME in os-release), '' when unknown."""
    try:
        text = os_release.read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME":
            return value.strip().strip('"')
    return ""


def check_in_guest(conn, files: Mapping[str, GuestFile], source: str) -> None:
    """The guest's own unbound-checkconf and keepalived -t on copies of the rendered configs in a
    scratch directory (nothing of the lab changes); ConfigError with the tool's message on rejection."""
    configs = {path: file.content for path, file in files.items()
               if path.startswith(f"{UNBOUND_DIR}/") or path == KEEPALIVED_CONF}
    # Keepalived 2.3 wants each track_file's file to exist: the copy watches files of its own.
    exit_dir = f"{GUEST_CHECK_DIR}/exit"
    configs[KEEPALIVED_CONF] = configs[KEEPALIVED_CONF].replace(EXIT_DIR.encode(), exit_dir.encode())
    downs = " ".join(shlex.quote(f"{exit_dir}/{Path(exit_file(name)).name}")
                     for name in resolver_names(files))
    remote.run(conn, f"rm -rf {GUEST_CHECK_DIR} && mkdir -m 0700 -p {exit_dir} && "
                     f"for f in {downs}; do echo 1 > \"$f\"; done")
    copies = {f"{GUEST_CHECK_DIR}/{Path(path).name}": content for path, content in configs.items()}
    try:
        remote.upload(conn, copies)
        for path in configs:
            copy = shlex.quote(f"{GUEST_CHECK_DIR}/{Path(path).name}")
            if path == KEEPALIVED_CONF:
                res = remote.run(conn, f"keepalived --config-test --use-file {copy}")
                if res.exited != 0:
                    out = (res.stderr + res.stdout).strip().replace(exit_dir, EXIT_DIR)
                    out = " | ".join(out.replace(f"{GUEST_CHECK_DIR}/keepalived.conf", "keepalived.conf")
                                     .splitlines())
                    raise ConfigError(f"{source}: keepalived -t rejects keepalived.conf (exit {res.exited}): "
                                      f"{out}")
            else:
                res = remote.run(conn, f"unbound-checkconf {copy}")
                if res.exited != 0:
                    out = " | ".join((res.stderr + res.stdout).strip().splitlines()) or f"exit {res.exited}"
                    raise ConfigError(f"{source}: unbound-checkconf rejects the config for resolver "
                                      f"{Path(path).stem}: {out}")
    finally:
        remote.run(conn, f"rm -rf {GUEST_CHECK_DIR}")


def validate_for(lab: Lab, files: Mapping[str, GuestFile], conn) -> None:
    """`validate` with this machine's tools when the lab's guest runs this machine's Debian release
    (or is a real host, the ssh provider), else with the guest release's own tools in the guest
    (units are still checked here: systemd-analyze takes the same unit syntax)."""
    if lab.vm.provider == "ssh" or lab.vm.release == host_release():
        validate(files, lab.source)
        return
    check_in_guest(conn, files, lab.source)
    _check_units_here(files, lab.source)
