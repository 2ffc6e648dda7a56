"""IPVS table sampler, uploaded to the lab guest and run in the director's namespace.

Standalone (stdlib only): reads /proc/net/ip_vs at a fixed rate and appends one CSV row per real
server per sample to OUT: `t_ns,vip,proto,real_server,weight,active_conns,inactive_conns`
(t_ns = CLOCK_REALTIME of the guest). Each sample is flushed, so a kill loses nothing written.
A real server absent from a sample was removed; a service with no real server at all gets one row
with an empty real_server and weight 0, so "every server gone" shows. Stops on SIGTERM or SIGINT,
and by itself after --max-s seconds (so it never outlives a runner that died).

    python3 ipvs_sampler.py OUT [--hz 20] [--max-s SECONDS] [--source /proc/net/ip_vs] [--pidfile FILE]
"""

from __future__ import annotations

import argparse
import os
import signal
import time

HEADER = "t_ns,vip,proto,real_server,weight,active_conns,inactive_conns\n"


def _addr(hexaddr: str) -> str:
    """`C0A86464:0035` -> `192.168.100.100:53`."""
    ip, port = hexaddr.split(":")
    return ".".join(str(int(ip[i:i + 2], 16)) for i in range(0, 8, 2)) + f":{int(port, 16)}"


def parse(text: str, *, empty_services: bool = False) -> list[tuple[str, str, str, int, int, int]]:
    """Rows (vip, proto, real_server, weight, active, inactive) of a /proc/net/ip_vs text; with
    `empty_services`, a service without real servers adds (vip, proto, "", 0, 0, 0)."""
    rows: list[tuple[str, str, str, int, int, int]] = []
    vip = proto = None
    found = True
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] in ("TCP", "UDP", "SCTP", "FWM"):
            if empty_services and not found:
                rows.append((vip, proto, "", 0, 0, 0))
            proto = fields[0].lower()
            vip = fields[1] if proto == "fwm" else _addr(fields[1])
            found = False
        elif fields[0] == "->" and vip and len(fields) >= 6 and ":" in fields[1]:
            rows.append((vip, proto, _addr(fields[1]), int(fields[3]), int(fields[4]), int(fields[5])))
            found = True
    if empty_services and not found:
        rows.append((vip, proto, "", 0, 0, 0))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--hz", type=float, default=20.0)
    ap.add_argument("--max-s", type=float, default=0.0, help="stop after this many seconds (0: never)")
    ap.add_argument("--source", default="/proc/net/ip_vs")
    ap.add_argument("--pidfile")
    args = ap.parse_args()
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    running = [True]

    def stop(*_: object) -> None:
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    period = 1.0 / args.hz
    new = not os.path.exists(args.out)
    with open(args.out, "a") as out:
        if new:
            out.write(HEADER)
        tick = time.monotonic()
        stop_at = tick + args.max_s if args.max_s > 0 else float("inf")
        while running[0] and time.monotonic() < stop_at:
            with open(args.source) as src:
                text = src.read()
            t_ns = time.time_ns()
            rows = parse(text, empty_services=True)
            out.write("".join(f"{t_ns},{v},{p},{rs},{w},{a},{i}\n" for v, p, rs, w, a, i in rows))
            out.flush()
            tick += period
            delay = tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                tick = time.monotonic()


if __name__ == "__main__":
    main()
