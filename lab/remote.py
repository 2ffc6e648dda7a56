"""Commands and uploads over a Fabric connection, with SSH failures turned into one-line errors."""

from __future__ import annotations

import io
from collections.abc import Mapping

from lab.errors import LabError


def unreachable(conn, err: Exception) -> LabError:
    """The error for a host that does not answer SSH."""
    return LabError(f"cannot reach the lab host {conn.user}@{conn.host}:{conn.port} over SSH "
                    f"({type(err).__name__}: {err}); is the VM up? run `fab up`", exit_code=3)


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


def upload(conn, blobs: Mapping[str, bytes]) -> None:
    """Write each blob to its absolute path in the guest over one SFTP session."""
    try:
        sftp = conn.sftp()
        for remote, content in blobs.items():
            sftp.putfo(io.BytesIO(content), remote)
    except Exception as err:
        if _is_ssh_error(err):
            raise unreachable(conn, err) from None
        raise
