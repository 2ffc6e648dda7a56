"""Per-query records: binary column arrays in memory, appended to one file per worker process.

The hot path only extends `array`s with numbers, a batch at a time. `flush()` writes them as one
chunk with one `os.write` (no formatting, so the gevent loop is not blocked); CSV is made later by
the merge.
A chunk is complete on disk once `os.write` returns, so a SIGKILL loses at most the rows not yet
flushed; a chunk cut short by the kill is ignored by the reader.

File layout: a sequence of chunks, each `b"DQ"`, a kind byte, a pad byte, a uint32 payload length,
then the payload:
- `M` meta (JSON): worker id, byte order, the query table [[qname, qtype], ...];
- `S` new resolver names (JSON list; indices continue from 1, 0 means unknown);
- `R` records: uint32 count, then each column's array bytes in `COLUMNS` order;
- `E` end: the worker closed the file cleanly.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat

SUFFIX = ".dq"
FLUSH_EVERY_S = 0.5  # the records writer flushes each worker's records this often (recording.py)
OUTCOMES = ("ok", "timeout", "error", "rcode")
OK, TIMEOUT, ERROR, RCODE = range(4)
PROTOS = ("udp", "tcp")
NO_RCODE = 255
COLUMNS = (  # name, array typecode
    ("t_send_ns", "q"),
    ("latency_ns", "q"),  # -1: no answer
    ("src_port", "H"),
    ("user", "H"),
    ("query", "H"),
    ("resolver", "H"),  # 0: unknown
    ("outcome", "B"),
    ("rcode", "B"),  # NO_RCODE: no answer
    ("proto", "B"),
    ("lookup_id", "I"),  # unique within the user
    ("attempt", "B"),  # 0: the lookup's first query
)
_CHUNK = struct.Struct("<2sBxI")
_COUNT = struct.Struct("<I")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return _CHUNK.pack(b"DQ", kind[0], len(payload)) + payload


def _columns() -> list[array]:
    return [array(code) for _, code in COLUMNS]


class Recorder:
    """Buffers one worker process's records and appends them to `<directory>/<worker>.dq`."""

    def __init__(self, directory: str, worker: str, queries: list[tuple[str, str]]) -> None:
        self.worker = worker
        self.path = os.path.join(directory, f"{worker}{SUFFIX}")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self._names: dict[str, int] = {"": 0}
        self._new_names: list[str] = []
        self._cols = _columns()
        self.rows = 0
        self._flushed_at = time.monotonic()
        meta = {"worker": worker, "byteorder": sys.byteorder, "queries": queries}
        os.write(self._fd, _chunk(b"M", json.dumps(meta).encode()))

    def resolver_index(self, name: str) -> int:
        """The index of a resolver name (0 for ""), registering new names for the next flush."""
        index = self._names.get(name)
        if index is None:
            index = self._names[name] = len(self._names)
            self._new_names.append(name)
        return index

    def add_batch(self, t_send_ns: Sequence[int], latency_ns: Sequence[int], src_port: Sequence[int],
                  user: int, query: Sequence[int], resolver: Sequence[str], outcome: Sequence[int],
                  rcode: Sequence[int], proto: Sequence[int], lookup_id: Sequence[int],
                  attempt: Sequence[int]) -> None:
        """Append rows given column-wise (one user's batch; see `COLUMNS`), in C loops."""
        names = self._names
        indices = list(map(names.get, resolver))
        if None in indices:
            indices = list(map(self.resolver_index, resolver))
        c = self._cols
        c[0].extend(t_send_ns)
        c[1].extend(latency_ns)
        c[2].extend(src_port)
        c[3].extend(repeat(user, len(query)))
        c[4].extend(query)
        c[5].extend(indices)
        c[6].extend(outcome)
        c[7].extend(rcode)
        c[8].extend(proto)
        c[9].extend(lookup_id)
        c[10].extend(attempt)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def flush(self) -> int:
        """Write the buffered rows (and new resolver names) as one append; return the row count."""
        if self.closed:
            return 0
        cols, self._cols = self._cols, _columns()
        # A KeyboardInterrupt (SIGINT stops the run) can land between two column extends of a batch:
        # write only whole rows, so the file never holds columns of different lengths.
        count = min(map(len, cols))
        for col in cols:
            del col[count:]
        parts = []
        if self._new_names:
            parts.append(_chunk(b"S", json.dumps(self._new_names).encode()))
            self._new_names = []
        if count:
            parts.append(_chunk(b"R", _COUNT.pack(count) + b"".join(col.tobytes() for col in cols)))
        if parts:
            os.write(self._fd, b"".join(parts))
        self.rows += count
        self._flushed_at = time.monotonic()
        return count

    def flush_if_due(self, every_s: float = FLUSH_EVERY_S) -> int:
        """Flush when the last flush was every_s or longer ago. The records writer calls it with each
        batch: a generator that cannot keep up only ever yields with `sleep(0)`, and a flush timer
        then never fires (measured: no flush in 20 s at 1,000 q/s under TCG)."""
        return self.flush() if time.monotonic() - self._flushed_at >= every_s else 0

    def close(self) -> None:
        """Flush, mark the file complete and close it. Idempotent."""
        if self.closed:
            return
        self.flush()
        os.write(self._fd, _chunk(b"E", b""))
        os.close(self._fd)
        self._fd = -1


@dataclass
class WorkerFile:
    """One worker's records as read back: meta, resolver names and decoded columns."""

    worker: str
    queries: list[tuple[str, str]]
    resolvers: list[str] = field(default_factory=lambda: [""])
    columns: list[array] = field(default_factory=_columns)
    complete: bool = False

    def rows(self) -> Iterator[tuple]:
        """Rows as tuples in `COLUMNS` order."""
        return zip(*self.columns, strict=True)


def read_worker_file(path: str) -> WorkerFile | None:
    """Decode a `.dq` file, ignoring a trailing chunk cut short by a kill; None if it has no meta."""
    with open(path, "rb") as handle:
        data = handle.read()
    result: WorkerFile | None = None
    swap = False
    offset = 0
    while offset + _CHUNK.size <= len(data):
        magic, kind, size = _CHUNK.unpack_from(data, offset)
        start, offset = offset + _CHUNK.size, offset + _CHUNK.size + size
        if magic != b"DQ" or offset > len(data):
            break
        payload = data[start:offset]
        if kind == ord("M"):
            meta = json.loads(payload)
            result = WorkerFile(meta["worker"], [tuple(q) for q in meta["queries"]])
            swap = meta["byteorder"] != sys.byteorder
        elif result is None:
            break
        elif kind == ord("S"):
            result.resolvers.extend(json.loads(payload))
        elif kind == ord("R"):
            _decode_rows(payload, result.columns, swap)
        elif kind == ord("E"):
            result.complete = True
    return result


ROW_BYTES = sum(array(code).itemsize for _, code in COLUMNS)


def _decode_rows(payload: bytes, columns: list[array], swap: bool) -> None:
    """Append one `R` chunk's rows; a chunk whose size does not match its count is skipped whole."""
    (count,) = _COUNT.unpack_from(payload)
    if len(payload) != _COUNT.size + count * ROW_BYTES:
        return
    offset = _COUNT.size
    for column in columns:
        size = count * column.itemsize
        part = array(column.typecode, payload[offset : offset + size])
        if swap:
            part.byteswap()
        column.extend(part)
        offset += size


def worker_files(directory: str) -> list[str]:
    """Paths of the `.dq` files in a records directory, sorted."""
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(SUFFIX))
