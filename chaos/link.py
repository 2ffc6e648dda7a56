"""The run's SSH connection to the lab, which tells a lost connection from a failed command.

A Fabric connection reopens itself on the next command after its transport died; a command that
was running when the connection went away returns exit status -1 or raises (EOFError, a socket
error, a paramiko error). `Link` turns both into `ConnectionLost`:

- while the timeline runs (`retry` off), at once: the run stops and rolls back;
- while the run rolls back and collects (`retry` on), only after reconnecting failed for
  `budget_s` seconds (each attempt at least a second apart). Rollbacks, stopping the probes and
  fetching files are idempotent, so a command cut by the loss is simply run again. Once the budget
  is spent the link is dead: every later call raises at once, and `fab recover` finishes the job.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

from lab.model.errors import GuestUnreachable

T = TypeVar("T")
RECONNECT_BUDGET_S = 45.0


class ConnectionLost(GuestUnreachable):
    """The SSH connection to the lab went away (and, when retrying, could not be made again)."""


def _transport_errors() -> tuple[type[BaseException], ...]:
    import paramiko

    return (EOFError, OSError, paramiko.SSHException)


def describe(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())[:200]


class Link:
    """A connection-like object (run, put, get, sftp, ...) over a Fabric connection; see the module."""

    def __init__(self, conn: Any, budget_s: float | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.conn = conn
        self.budget_s = RECONNECT_BUDGET_S if budget_s is None else budget_s
        self.retry = False
        self.lost: str | None = None  # why the link is dead, once it is
        self._sleep = sleep
        self._sftp_transport: Any = None

    def __getattr__(self, name: str) -> Any:  # user, host, port, config, ... of the connection
        return getattr(self.conn, name)

    # -- what callers use ---------------------------------------------------------------------------

    def run(self, command: str, **kwargs: Any) -> Any:
        return self._call(lambda: self._run_once(command, **kwargs))

    def put(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(lambda: self._sftp_call(lambda: self.conn.put(*args, **kwargs)))

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(lambda: self._sftp_call(lambda: self.conn.get(*args, **kwargs)))

    def sftp(self) -> Any:
        return self._call(lambda: self._sftp_call(self.conn.sftp))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead transport may raise; it is closed anyway
            self.conn.close()

    # -- internals ----------------------------------------------------------------------------------

    def _connected(self) -> bool:
        return bool(getattr(self.conn, "is_connected", True))

    def _run_once(self, command: str, **kwargs: Any) -> Any:
        result = self.conn.run(command, **kwargs)
        if getattr(result, "exited", 0) == -1 and not self._connected():
            raise EOFError("the connection closed while the command ran")
        return result

    def _sftp_call(self, call: Callable[[], T]) -> T:
        """Fabric keeps one SFTP session per connection, also after it reopened the transport under
        it: close the stale session first (the call opens a fresh one)."""
        seen = self._sftp_transport
        if seen is not None and getattr(self.conn, "transport", None) is not seen:
            self.close()
        out = call()
        self._sftp_transport = getattr(self.conn, "transport", None)
        return out

    def _call(self, call: Callable[[], T]) -> T:
        if self.lost is not None:
            raise ConnectionLost(self.lost)
        deadline: float | None = None
        while True:
            try:
                return call()
            except _transport_errors() as err:
                if self._connected() and not isinstance(err, EOFError):
                    raise  # a local file error, or a refused SFTP write: not the connection
                problem = describe(err)
            self.close()
            if not self.retry:
                raise ConnectionLost(f"lost the SSH connection to the lab ({problem})")
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + self.budget_s
            if now >= deadline:
                self.lost = (f"lost the SSH connection to the lab and could not reconnect within "
                             f"{self.budget_s:g} s ({problem})")
                raise ConnectionLost(self.lost)
            self._sleep(min(1.0 + (now - (deadline - self.budget_s)) / 4, 5.0, max(deadline - now, 0.05)))
