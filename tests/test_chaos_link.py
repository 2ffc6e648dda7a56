"""chaos.link: a lost connection is told from a failed command; retried within a budget while rolling
back, at once an error while the timeline runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from chaos.link import ConnectionLost, Link


class Flaky:
    """A connection that fails its next `failures` calls with `error` (and is then disconnected)."""

    def __init__(self, failures: int = 0, error: BaseException | None = None, exited: int = 0) -> None:
        self.failures, self.error, self.exited = failures, error or EOFError("closed"), exited
        self.is_connected = True
        self.calls = self.closes = 0
        self.transport = object()

    def run(self, cmd, **_kw):
        self.calls += 1
        if self.failures:
            self.failures -= 1
            self.is_connected = False
            if self.exited:
                return SimpleNamespace(exited=self.exited, stdout="")
            raise self.error
        self.is_connected = True
        return SimpleNamespace(exited=0, stdout="ok")

    def put(self, *_a):
        self.calls += 1

    def close(self):
        self.closes += 1
        self.is_connected = False


def test_while_the_timeline_runs_a_loss_is_an_error_at_once():
    conn = Flaky(failures=1)
    with pytest.raises(ConnectionLost, match=r"^lost the SSH connection to the lab \(EOFError: closed\)$"):
        Link(conn, sleep=lambda s: None).run("true")
    assert conn.calls == 1


def test_while_rolling_back_a_loss_is_retried_on_a_new_connection():
    conn = Flaky(failures=2, error=ConnectionResetError(104, "reset"))
    link = Link(conn, budget_s=30, sleep=lambda s: None)
    link.retry = True
    assert link.run("true").stdout == "ok" and conn.calls == 3 and conn.closes == 2


def test_a_command_cut_by_the_loss_counts_as_lost():
    conn = Flaky(failures=1, exited=-1)  # what Fabric returns when the channel closes mid-command
    link = Link(conn, sleep=lambda s: None)
    link.retry = True
    assert link.run("true").stdout == "ok" and conn.calls == 2


def test_after_the_budget_the_link_is_dead_and_says_so_at_once():
    slept: list[float] = []
    conn = Flaky(failures=10**6, error=ConnectionRefusedError(111, "refused"))
    link = Link(conn, budget_s=0.05, sleep=slept.append)
    link.retry = True
    with pytest.raises(ConnectionLost, match="could not reconnect within 0.05 s"):
        link.run("true")
    calls = conn.calls
    with pytest.raises(ConnectionLost):
        link.put("a", "b")
    assert conn.calls == calls, "a dead link does not try again"
    assert slept and max(slept) <= 5


def test_a_local_error_on_a_live_connection_is_not_a_loss():
    class LocalDiskFull(Flaky):
        def run(self, cmd, **_kw):
            raise OSError(28, "No space left on device")

    link = Link(LocalDiskFull(), sleep=lambda s: None)
    link.retry = True
    with pytest.raises(OSError, match="No space left"):
        link.run("true")


def test_a_stale_sftp_session_is_closed_after_the_transport_was_reopened():
    conn = Flaky()
    link = Link(conn, sleep=lambda s: None)
    link.put("a", "b")
    assert conn.closes == 0
    conn.transport = object()  # Fabric reopened the connection under the SFTP session
    link.put("a", "b")
    assert conn.closes == 1
