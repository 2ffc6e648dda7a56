"""Commands and uploads over a Fabric connection, with SSH failures turned into one-line errors.

A host that does not answer is "cannot reach"; a file the login user may not write is "permission
denied" (dnslab works as root in the lab host: `require_root` says so up front).
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from lab.model.errors import GuestUnreachable, LabError


def unreachable(conn, err: Exception) -> LabError:
    """The error for a host that does not answer SSH."""
    return GuestUnreachable(f"cannot reach the lab host {conn.user}@{conn.host}:{conn.port} over SSH "
                            f"({type(err).__name__}: {err}); is the VM up? run `fab up`")


def _is_ssh_error(err: Exception) -> bool:
    return isinstance(err, OSError | EOFError) or type(err).__module__.startswith("paramiko")


def run(conn, command: str, **kwargs):
    """Run a command in the guest (never raising on its exit status); returns Fabric's Result."""
    try:
        return conn.run(command, hide=kwargs.pop("hide", True), warn=True, pty=False, **kwargs)
    except Exception as err:
        if _is_ssh_error(err):
            raise unreachable(conn, err) from None
        raise


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
