"""Stop requests while a run holds faults: SIGINT, SIGTERM and SIGHUP all mean "roll back and stop".

While the run's timeline runs (`stop_on_signals`), each of the three raises `Interrupted` in the
main thread; the runner then rolls back, stops its probes and keeps the data. While that cleanup
runs (`deferred`), a further signal only prints a notice: the cleanup must finish. SIGHUP (the
terminal went away) also silences the console, so writing to a dead terminal cannot break the
cleanup. SIGKILL cannot be caught: the run's undo log (chaos.undo_log) covers it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A run was asked to stop by a signal. `exit_code` is 128 + the signal number, as a shell reports it."""

    def __init__(self, signame: str, message: str = "") -> None:
        super().__init__(message or f"interrupted by {signame}")
        self.signame = signame
        self.exit_code = 128 + int(getattr(signal, signame, signal.SIGINT))


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install(handler: Any) -> dict[int, Any]:
    """Install `handler` for every stop signal (main thread only); the previous handlers."""
    if not _main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}


def _restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _silence_on_hangup(signum: int, console: Any) -> None:
    if signum == signal.SIGHUP and console is not None:
        console.quiet = True  # the terminal is gone: writing to it would fail the cleanup


@contextmanager
def stop_on_signals(console: Any = None) -> Iterator[None]:
    """Within the block, the first SIGINT, SIGTERM or SIGHUP raises `Interrupted`; later ones only print
    a notice, as in `deferred` (the cleanup the first one started must finish). Outside the main
    thread: a no-op."""
    raised: list[str] = []

    def handler(signum: int, _frame: object) -> None:
        _silence_on_hangup(signum, console)
        if raised:
            if console is not None:
                console.print("[yellow]rolling back and saving data; please wait[/]")
            return
        raised.append(signal.Signals(signum).name)
        raise Interrupted(raised[0])

    previous = _install(handler)
    try:
        yield
    finally:
        _restore(previous)


@contextmanager
def deferred(console: Any = None) -> Iterator[list[str]]:
    """Within the block, a stop signal only prints a notice; yields the names of those received."""
    received: list[str] = []

    def notice(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        _silence_on_hangup(signum, console)
        if console is not None:
            console.print("[yellow]rolling back and saving data; please wait[/]")

    previous = _install(notice)
    try:
        yield received
    finally:
        _restore(previous)
