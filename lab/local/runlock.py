"""One run at a time against a lab: up, down, deploy, teardown, chaos, load, matrix and demo.

The lock is an `flock` on state_dir()/lab.lock (one state directory is one lab VM). The kernel drops
it when its holder exits, however it exits, so a dead run never blocks the next one. The holder
writes its PID, task and start time into the file; a second run fails at once with a one-line
"busy" error naming them. Within one process the lock is re-entrant: the demo runs deploy and the
matrix, the matrix runs experiments, and an experiment may redeploy (switch_check).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

from lab.local.state import state_dir
from lab.model.errors import LabBusy

P = ParamSpec("P")
R = TypeVar("R")

LOCK_FILE = "lab.lock"

_held: dict[str, list[int]] = {}  # lock path -> [fd, depth], this process only
_mutex = threading.Lock()


def lock_path() -> Path:
    return state_dir() / LOCK_FILE


@contextmanager
def lab_lock(task: str) -> Iterator[None]:
    """Hold the lab's lock while the block runs (re-entrant), or raise a one-line busy LabError."""
    path = lock_path()
    key = str(path.resolve())
    with _mutex:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield
        finally:
            with _mutex:
                entry[1] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LabBusy(f"cannot start {task}: the lab is busy: {holder(path)}; wait for it to end "
                      "(or stop it), then try again") from None
    info = {"pid": os.getpid(), "task": task, "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv)[:200]}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    with _mutex:
        _held[key] = [fd, 1]
    try:
        yield
    finally:
        with _mutex:
            del _held[key]
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def holder(path: Path | None = None) -> str:
    """Who holds the lock, as the lock file says: `fab chaos (PID 123) since 2026-...Z`."""
    path = path or lock_path()
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or not info.get("pid"):
        return f"another process holds {path}"
    pid = info["pid"]
    alive = _alive(pid)
    text = f"{info.get('task', '?')} (PID {pid}) holds {path} since {info.get('since', '?')}"
    return text if alive else f"{text}; PID {pid} has exited, so a process it started still holds it"


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def locked(task: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: run the function holding the lab's lock (see `lab_lock`)."""

    def wrap(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            with lab_lock(task):
                return func(*args, **kwargs)

        return inner

    return wrap
