"""A synthetic run with removal on exit, Keepalived's word (detect events) and all resolvers down,
whose numbers are known by construction (`EXIT_TRUTH`), for the detection and returns analysis.

Timeline (ms from T0_NS; one query every 2 ms, resolver rs1/rs2/rs3 by query index, latency 1 ms;
IPVS samples every 50 ms; Keepalived's word for UDP comes before the sample that shows it, TCP later):
- 1000 kill rs2: its queries fail until 1030; gone from UDP at sample 1050, from TCP at 1100.
- 2000 restart rs2: back in IPVS at 2450 (rs_up at 2400/2410).
- 3000, 3010, 3020 kill rs1, rs2, rs3: every query fails; from sample 3050 both services are empty.
- 4000 restart rs1: back at 4300 (rs_up 4280); queries sent before 4300 fail.
- 5000 restart rs2, back at 5250; 5500 restart rs3, back at 5550. The run ends at 6000.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.synthetic import MS, RESOLVERS, SERVERS, T0_NS, VIP, meta_for, write_run

KILL = "kill_resolver"
RESTART = "restart_resolver"
# (t_ms, kind, action, resolver)
TIMELINE = ((1000, "fault", KILL, "rs2"), (2000, "rollback", RESTART, "rs2"),
            (3000, "fault", KILL, "rs1"), (3010, "fault", KILL, "rs2"), (3020, "fault", KILL, "rs3"),
            (4000, "rollback", RESTART, "rs1"), (5000, "rollback", RESTART, "rs2"),
            (5500, "rollback", RESTART, "rs3"))
# Keepalived's word: (t_ms, rs_down|rs_up, resolver, proto)
SAID = ((1030, "rs_down", "rs2", "udp"), (1080, "rs_down", "rs2", "tcp"),
        (2400, "rs_up", "rs2", "udp"), (2410, "rs_up", "rs2", "tcp"),
        (3030, "rs_down", "rs1", "udp"), (3031, "rs_down", "rs2", "udp"), (3032, "rs_down", "rs3", "udp"),
        (4280, "rs_up", "rs1", "udp"), (5240, "rs_up", "rs2", "udp"), (5540, "rs_up", "rs3", "udp"))
# When each resolver is in IPVS, per protocol: [from, to) in ms
PRESENT = {
    ("rs1", "udp"): ((0, 3050), (4300, 6001)), ("rs1", "tcp"): ((0, 3050), (4300, 6001)),
    ("rs2", "udp"): ((0, 1050), (2450, 3050), (5250, 6001)),
    ("rs2", "tcp"): ((0, 1100), (2450, 3050), (5250, 6001)),
    ("rs3", "udp"): ((0, 3050), (5550, 6001)), ("rs3", "tcp"): ((0, 3050), (5550, 6001)),
}

EXIT_TRUTH: dict[str, Any] = {
    "queries": 3000,
    "faults": [  # (target, failover_window_ms, failed, detection_ms, by_proto, notify_ms, notify_by_proto)
        ("rs2", 28.0, 5, 50.0, {"udp": 50.0, "tcp": 100.0}, 30.0, {"udp": 30.0, "tcp": 80.0}),
        ("rs1", 8.0, 5, None, {"udp": None, "tcp": None}, None, {"udp": None, "tcp": None}),
        ("rs2", 8.0, 5, None, {"udp": None, "tcp": None}, None, {"udp": None, "tcp": None}),
        ("rs3", 978.0, 490, 30.0, {"udp": 30.0, "tcp": 30.0}, 12.0, {"udp": 12.0, "tcp": None}),
    ],
    "returns": [  # (target, readded_ms, notify_up_ms, first_answer_ms, failed, window_ms)
        ("rs2", 450.0, 400.0, 1.0, 0, 0.0),
        ("rs1", 300.0, 280.0, 301.0, 150, 298.0),
        ("rs2", 250.0, 240.0, 1.0, 0, 0.0),
        ("rs3", 50.0, 40.0, 1.0, 0, 0.0),
    ],
    # the TCP-only load: detection follows the TCP service
    "tcp_only_first_fault": (100.0, 80.0),
    "kill_stats": {"n": 4, "failover_window_ms": {"n": 4, "median": 18.0, "min": 8.0, "max": 978.0},
                   "failed": {"n": 4, "median": 5.0, "min": 5.0, "max": 490.0}},
}


# When each resolver does not answer: [from, to) in ms
DOWN = {"rs1": ((3000, 4300),), "rs2": ((1000, 2450), (3010, 5250)), "rs3": ((3020, 5550),)}


def _present(name: str, proto: str, t_ms: int) -> bool:
    return any(lo <= t_ms < hi for lo, hi in PRESENT[(name, proto)])


def _up(name: str, t_ms: int) -> bool:
    return not any(lo <= t_ms < hi for lo, hi in DOWN[name])


def _query(i: int, proto: str) -> dict[str, Any]:
    t_ms = 2 * i
    resolver = RESOLVERS[i % 3]
    dead = (resolver == "rs2" and 1000 <= t_ms < 1030) or 3000 <= t_ms < 4300
    if not dead and not _up(resolver, t_ms):  # Keepalived took it out: rescheduled to one that answers
        resolver = next(r for r in RESOLVERS if _up(r, t_ms))
    return {"t_send_ns": T0_NS + t_ms * MS, "latency_ms": None if dead else 1.0,
            "outcome": "timeout" if dead else "ok", "rcode": None if dead else "NOERROR",
            "resolver": None if dead else resolver, "proto": proto, "qname": "who.lab.test", "qtype": "TXT",
            "src_port": 30000 + i, "worker": f"w{i % 4}"}


def _samples() -> list[dict[str, Any]]:
    rows = []
    for t_ms in range(0, 6001, 50):
        for proto in ("udp", "tcp"):
            here = [SERVERS[n] for n in RESOLVERS if _present(n, proto, t_ms)]
            for server in here or [None]:  # a service with no real server: one empty row, weight 0
                rows.append({"t_ns": T0_NS + t_ms * MS, "vip": VIP, "proto": proto, "real_server": server,
                             "weight": 1 if server else 0, "active_conns": 0, "inactive_conns": 0})
    return rows


def _events() -> list[dict[str, Any]]:
    out = [{"t_ns": T0_NS + t * MS, "kind": kind, "action": action, "target": name,
            "detail": {"real_server": SERVERS[name]}} for t, kind, action, name in TIMELINE]
    out += [{"t_ns": T0_NS + t * MS, "kind": "detect", "action": action, "target": name,
             "detail": {"real_server": SERVERS[name], "proto": proto, "vip": VIP}}
            for t, action, name, proto in SAID]
    return out


def write_exit_run(run_dir: Path, *, tcp_only: bool = False) -> Path:
    """The run of EXIT_TRUTH (every query over TCP with `tcp_only`)."""
    queries = [_query(i, "tcp" if tcp_only else "udp") for i in range(EXIT_TRUTH["queries"])]
    return write_run(run_dir, meta_for(run_dir.name, "exit"), queries, _events(), _samples())
