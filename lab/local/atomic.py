"""Atomic, durable file writes: a temporary file beside the target, fsynced, renamed over it.

A reader sees the old content or the new, never a part; after a crash or power loss the file holds
one of the two. Used for every file the lab rewrites in place (meta.json, events.jsonl, summary.json,
matrix.json, demo.json, accel.json, ...).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike[str], data: str | bytes, mode: int = 0o644) -> Path:
    """Replace `path` with `data` (text is written as UTF-8) atomically and durably; return the path."""
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def write_json(path: str | os.PathLike[str], value: Any, indent: int | None = 1) -> Path:
    """`value` as JSON (with a final newline), written atomically."""
    return write_atomic(path, json.dumps(value, indent=indent) + "\n")


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: some file systems refuse to fsync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
