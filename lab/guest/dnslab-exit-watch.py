#!/usr/bin/python3
"""dnslab exit watcher: tells Keepalived the instant a resolver process exits (removal on exit).

Started by the resolver unit once Unbound is ready (ExecStartPost, in the background):

    dnslab-exit-watch FILE PID

It opens a pidfd on PID, then writes 0 to FILE (ready and watched: /run/dnslab/exit/NAME.down), waits
until the process exits (the pidfd becomes readable: no polling, no process start on the way) and
writes 1. Keepalived watches that file (track_file + FILE_CHECK) and removes the real server at
once. The unit's ExecStop/ExecStopPost write 1 too, so an exit the watcher misses (it was not yet
running, or was killed) still reaches Keepalived, one process start later. Stdlib only.
"""

import os
import select
import sys


def mark(path: str, value: int) -> None:
    with open(path, "w") as f:
        f.write(f"{value}\n")


def main() -> int:
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        print("usage: dnslab-exit-watch FILE PID", file=sys.stderr)
        return 2
    path, pid = sys.argv[1], int(sys.argv[2])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:  # gone before it could be watched
        mark(path, 1)
        return 0
    mark(path, 0)
    select.select([fd], [], [])
    mark(path, 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
