"""Merge a records directory's per-worker `.dq` files into the run's queries.csv.

`python -m loadtest.merge DIR [--out FILE] [--wait SECONDS]` writes DIR/queries.csv (or FILE),
sorted by t_send_ns, in the columns of DESIGN.md section 5, and prints the row count. It reads
whatever the workers flushed, so it also works after a SIGKILL. Stdlib + dnspython only.
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


def read_all(directory: str, wait_s: float = 0.0) -> list[WorkerFile]:
    """Every worker file in `directory`, waiting up to `wait_s` for them to be closed cleanly."""
    deadline = time.monotonic() + wait_s
    while True:
        files = [f for f in map(read_worker_file, worker_files(directory)) if f is not None]
        if all(f.complete for f in files) or time.monotonic() >= deadline:
            return files
        time.sleep(0.1)


def csv_rows(files: list[WorkerFile]) -> list[tuple]:
    """queries.csv rows (without header) of all workers, sorted by t_send_ns."""
    rows = []
    for wf in files:
        for t_send, latency, port, user, query, resolver, outcome, rcode, proto, lookup, attempt in wf.rows():
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
                lookup,
                attempt,
            ))
    rows.sort(key=lambda row: row[0])
    return rows


def merge(directory: str, out: str | None = None, wait_s: float = 0.0) -> tuple[str, int]:
    """Write the merged queries.csv atomically; return its path and row count."""
    path = out or os.path.join(directory, "queries.csv")
    rows = csv_rows(read_all(directory, wait_s))
    partial = f"{path}.partial"
    with open(partial, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)
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
    path, count = merge(args.directory, args.out, args.wait)
    print(f"{count} queries -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
