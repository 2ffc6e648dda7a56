"""Keepalived's own word as events: reads its lvs_notify_fifo in the lab guest, stamps each line.

Standalone (stdlib only), uploaded and started beside the IPVS sampler. Keepalived writes one line
per state change, right after it changed the IPVS table:

    RS [192.168.100.12]:udp:53 [192.168.100.100]:udp:53 DOWN     -> a `detect` event rs_down
    VS [192.168.100.100]:udp:53 UP                               -> a `note` vs_quorum_up

Each becomes one events.jsonl object (docs/run-directory.md) appended to OUT and flushed at once,
stamped with the guest's CLOCK_REALTIME when the line was read (the clock of the query records).
Lines already waiting in the FIFO when the reader starts are old (Keepalived writes whether or not
anyone reads) and are dropped. Stops on SIGTERM or SIGINT, and by itself after --max-s seconds (so it
never outlives a runner that died).

    python3 notify_reader.py FIFO OUT [--name 192.168.100.12:53=rs2 ...] [--max-s SECONDS] [--pidfile FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import signal
import time

ADDR = r"\[?([0-9A-Fa-f.:]+?)\]?:(udp|tcp|sctp):(\d+)"
RS_RE = re.compile(rf"^RS {ADDR} {ADDR} (UP|DOWN)$")
VS_RE = re.compile(rf"^VS {ADDR} (UP|DOWN)$")


def parse_line(line: str, names: dict[str, str]) -> dict[str, object] | None:
    """One FIFO line as an event without `t_ns`; None for a line of another kind."""
    line = line.strip()
    if m := RS_RE.match(line):
        ip, proto, port, vip, _, vport, state = m.groups()
        real_server = f"{ip}:{port}"
        return {"kind": "detect", "action": f"rs_{state.lower()}",
                "target": names.get(real_server, real_server),
                "detail": {"real_server": real_server, "proto": proto, "vip": f"{vip}:{vport}",
                           "source": "lvs_notify_fifo"}}
    if m := VS_RE.match(line):
        vip, proto, port, state = m.groups()
        return {"kind": "note", "action": f"vs_quorum_{state.lower()}", "target": "keepalived",
                "detail": {"vip": f"{vip}:{port}", "proto": proto, "source": "lvs_notify_fifo"}}
    return None


def events(data: bytes, t_ns: int, pending: bytes, names: dict[str, str]) -> tuple[list[str], bytes]:
    """JSON lines for the complete FIFO lines in pending + data, and what is left of a cut line."""
    *lines, rest = (pending + data).split(b"\n")
    out = []
    for raw in lines:
        event = parse_line(raw.decode(errors="replace"), names)
        if event is not None:
            out.append(json.dumps({"t_ns": t_ns, **event}) + "\n")
    return out, rest


def _drain(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except BlockingIOError:
            return


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("fifo")
    ap.add_argument("out")
    ap.add_argument("--name", action="append", default=[], help="IP:PORT=NAME, for the event's target")
    ap.add_argument("--max-s", type=float, default=0.0, help="stop after this many seconds (0: never)")
    ap.add_argument("--pidfile")
    args = ap.parse_args()
    names = dict(item.split("=", 1) for item in args.name)
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    running = [True]

    def stop(*_: object) -> None:
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stop_at = time.monotonic() + args.max_s if args.max_s > 0 else float("inf")
    # Read-write: a FIFO opened so never reads EOF, even while Keepalived closes and reopens it
    # on a reload; non-blocking: the drain and the final read never hang.
    fd = os.open(args.fifo, os.O_RDWR | os.O_NONBLOCK)
    _drain(fd)
    pending = b""
    with open(args.out, "a") as out:
        while True:
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
            except InterruptedError:
                ready = []
            if time.monotonic() >= stop_at:
                running[0] = False
            if ready or not running[0]:
                t_ns = time.time_ns()
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    data = b""
                lines, pending = events(data, t_ns, pending, names)
                out.writelines(lines)
                out.flush()
            if not running[0]:
                break
    os.close(fd)


if __name__ == "__main__":
    main()
