"""The one remote API: commands, scripts and file transfers over a Fabric connection (or chaos.link's
`Link` over one), with SSH failures turned into one-line errors.

A host that does not answer, or a connection that drops (a socket error, EOF, a paramiko error), is
"cannot reach"; a file the login user may not write is "permission denied" (dnslab works as root in
the lab host: `require_root` says so up front). A guest-side script is a real file, sent whole as
`bash -c` text with its arguments as quoted positional parameters ($1, $2, ...).
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab.model.errors import ActionFailed, GuestUnreachable, LabError


def unreachable(conn, err: Exception) -> LabError:
    """The error for a host that does not answer SSH."""
    return GuestUnreachable(f"cannot reach the lab host {conn.user}@{conn.host}:{conn.port} over SSH "
                            f"({type(err).__name__}: {err}); is the VM up? run `fab up`")


def _is_ssh_error(err: Exception) -> bool:
    return isinstance(err, OSError | EOFError) or type(err).__module__.startswith("paramiko")


def run(conn, command: str, *, check: bool = False, what: str | None = None, **kwargs):
    """Run a command in the guest; returns Fabric's Result. A failed exit status is returned, or with
    `check` a one-line LabError naming `what` (else the command's start) and the command's stderr."""
    kwargs.pop("warn", None)
    try:
        res = conn.run(command, hide=kwargs.pop("hide", True), warn=True, pty=False, **kwargs)
    except Exception as err:
        if _is_ssh_error(err):
            raise unreachable(conn, err) from None
        raise
    if check and res.exited != 0:
        said = " ".join(str(res.stderr or res.stdout or "").split())[-300:]
        raise ActionFailed(f"{what or command.split(chr(10))[0][:80]} failed in the lab host "
                           f"(exit {res.exited}){': ' + said if said else ''}")
    return res


def script_command(script: Path, *args: Any, netns: str | None = None) -> str:
    """The command line running the shell script `script` (a file of ours) with `args` as its
    positional parameters, in network namespace `netns` when given; every word quoted."""
    argv = ["bash", "-c", script.read_text(), script.name, *(str(a) for a in args)]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return " ".join(shlex.quote(word) for word in argv)


def run_script(conn, script: Path, *args: Any, netns: str | None = None, **kwargs):
    """Run a shell script of ours in the guest with `args` (see `script_command`); as `run`."""
    return run(conn, script_command(script, *args, netns=netns), what=kwargs.pop("what", script.name),
               **kwargs)


def _transfer(conn, call, remote: str, local: str):
    try:
        return call()
    except LabError:
        raise
    except OSError as err:
        if err.filename is not None and str(err.filename) == str(local):  # this machine's file, not SSH
            raise ActionFailed(f"cannot use {local}: {err.strerror}") from None
        if isinstance(err, PermissionError | FileNotFoundError):  # SFTP's status for the guest's file
            raise GuestUnreachable(f"cannot copy {remote} in the lab host as {conn.user}: "
                                   f"{err.strerror or err}") from None
        raise unreachable(conn, err) from None
    except Exception as err:
        if _is_ssh_error(err):
            raise unreachable(conn, err) from None
        raise


def put(conn, local: str | Path, remote: str):
    """Copy a file of this machine to `remote` in the guest."""
    return _transfer(conn, lambda: conn.put(str(local), remote), remote, str(local))


def get(conn, remote: str, local: str | Path):
    """Copy `remote` from the guest to a file of this machine."""
    return _transfer(conn, lambda: conn.get(remote, str(local)), remote, str(local))


def require_root(conn) -> None:
    """A one-line LabError unless the connection's user is root in the lab host (deploy, probes and
    experiments write system files, namespaces and IPVS rules)."""
    uid = run(conn, "id -u").stdout.strip()
    if uid != "0":
        raise GuestUnreachable(f"the lab host logs {conn.user}@{conn.host}:{conn.port} in as "
                               f"uid {uid or '?'}, not root; dnslab works there as root: log in as root "
                               "(the ssh provider: [ssh] user = \"root\")")


def upload(conn, blobs: Mapping[str, bytes]) -> None:
    """Write each blob to its absolute path in the guest over one SFTP session."""
    try:
        sftp = conn.sftp()
    except Exception as err:
        if _is_ssh_error(err):
            raise unreachable(conn, err) from None
        raise
    for remote, content in blobs.items():
        try:
            sftp.putfo(io.BytesIO(content), remote)
        except PermissionError:  # SFTP's "permission denied": the session itself is fine
            raise GuestUnreachable(f"cannot write {remote} in the lab host as {conn.user}: "
                                   "permission denied; dnslab works there as root") from None
        except FileNotFoundError:  # SFTP's "no such file": the directory is missing
            raise GuestUnreachable(f"cannot write {remote} in the lab host as {conn.user}: "
                                   "its directory does not exist") from None
        except Exception as err:
            if _is_ssh_error(err):
                raise unreachable(conn, err) from None
            raise
