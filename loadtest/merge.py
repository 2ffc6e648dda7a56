"""Merge a records directory's per-worker `.dq` files into the run's queries.csv.

`python -m loadtest.merge DIR [--out FILE] [--wait SECONDS]` writes DIR/queries.csv (or FILE),
sorted by t_send_ns, in the columns of docs/run-directory.md, and prints the row count. It reads
whatever the workers flushed, so it also works after a SIGKILL. A worker file that cannot be read
is named on stderr and left out; the others are still merged (exit 1). Stdlib + dnspython only.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

from loadtest.records import NO_RCODE, OUTCOMES, PROTOS, WorkerFile, read_worker_file, worker_files
from loadtest.wire import rcode_name

HEADER = ("t_send_ns", "latency_ms", "outcome", "rcode", "resolver", "proto", "qname", "qtype",
          "src_port", "worker", "lookup_id", "attempt")
RCODES = [rcode_name(code) for code in range(16)]


def read_all(directory: str, wait_s: float = 0.0) -> tuple[list[WorkerFile], list[str]]:
    """Every readable worker file in `directory` (waiting up to `wait_s` for them to be closed
    cleanly), and one problem line per file that cannot be decoded."""
    deadline = time.monotonic() + wait_s
    while True:
        files, bad = [], []
        for path in worker_files(directory):
            try:
                wf = read_worker_file(path)
            except (ValueError, KeyError, TypeError, AttributeError, OSError) as err:
                bad.append(f"{path}: unreadable worker file ({type(err).__name__}: {err})")
                continue
            if wf is not None:
                files.append(wf)
        if all(f.complete for f in files) or time.monotonic() >= deadline:
            return files, bad
        time.sleep(0.1)


def csv_rows(files: list[WorkerFile], bad: list[str] | None = None) -> list[tuple]:
    """queries.csv rows (without header) of all workers, sorted by t_send_ns. With `bad`, a worker
    whose rows do not decode is left out and named there instead of failing the whole merge."""
    rows = []
    for wf in files:
        try:
            rows += _worker_rows(wf)
        except (IndexError, KeyError, ValueError, TypeError) as err:
            if bad is None:
                raise
            bad.append(f"worker {wf.worker}: inconsistent records ({type(err).__name__}: {err})")
    rows.sort(key=lambda row: row[0])
    return rows


def _worker_rows(wf: WorkerFile) -> list[tuple]:
    """One worker's queries.csv rows, in its own order (columns after `proto` are written as they are)."""
    rows = []
    for t_send, latency, port, user, query, resolver, outcome, rcode, proto, *rest in wf.rows():
        qname, qtype = wf.queries[query]
        rows.append((
            t_send,
            f"{latency / 1e6:.3f}" if latency >= 0 else "",
            OUTCOMES[outcome],
            "" if rcode == NO_RCODE else RCODES[rcode],
            wf.resolvers[resolver],
            PROTOS[proto],
            qname,
            qtype,
            port,
            f"{wf.worker}.u{user}",
            *rest,
        ))
    return rows


def merge(directory: str, out: str | None = None, wait_s: float = 0.0,
          problems: list[str] | None = None) -> tuple[str, int]:
    """Write the merged queries.csv atomically; return its path and row count.

    Worker files that cannot be read are left out and named in `problems` (on stderr without it)."""
    path = out or os.path.join(directory, "queries.csv")
    files, bad = read_all(directory, wait_s)
    rows = csv_rows(files, bad)
    if problems is None:
        for problem in bad:
            print(f"loadtest.merge: error: {problem}; left out of {path}", file=sys.stderr)
    else:
        problems.extend(bad)
    partial = f"{path}.partial"
    with open(partial, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    return path, len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.merge", description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="records directory (the --dns-records of the run)")
    parser.add_argument("--out", help="output file (default: DIR/queries.csv)")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for workers to close")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.directory):
        print(f"loadtest.merge: error: {args.directory}: not a directory", file=sys.stderr)
        return 2
    bad: list[str] = []
    try:
        path, count = merge(args.directory, args.out, args.wait, bad)
    except OSError as err:
        print(f"loadtest.merge: error: {err.filename or args.directory}: {err.strerror}", file=sys.stderr)
        return 2
    print(f"{count} queries -> {path}")
    for problem in bad:
        print(f"loadtest.merge: error: {problem}; left out of {path}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
