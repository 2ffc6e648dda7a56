"""Synthetic run directories with known ground truth, for tests and the benchmark.

`write_planted_run` writes a small run whose numbers are known by construction (see PLANTED; it has
no lookup columns, so each query is its own lookup); `write_lookup_run` a run of retrying clients
with known lookups (see PLANTED_LOOKUPS); `write_bulk_run` writes a large realistic run quickly
(numpy + pyarrow) for the benchmark.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyarrow import csv as pacsv

from lab.model.parse import load_lab

T0_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
MS = 1_000_000
QUERY_HEADER = (
    "t_send_ns",
    "latency_ms",
    "outcome",
    "rcode",
    "resolver",
    "proto",
    "qname",
    "qtype",
    "src_port",
    "worker",
)
LOOKUP_HEADER = (*QUERY_HEADER, "lookup_id", "attempt")
IPVS_HEADER = ("t_ns", "vip", "proto", "real_server", "weight", "active_conns", "inactive_conns")
VIP = "192.168.100.100:53"
SERVERS = {"rs1": "192.168.100.11:53", "rs2": "192.168.100.12:53", "rs3": "192.168.100.13:53"}
RESOLVERS = tuple(SERVERS)
REUSED_PORT = 40000

# Ground truth of the planted run, by construction (times in ms from T0_NS).
PLANTED: dict[str, Any] = {
    "queries": 600,
    "ok": 453,
    "dropped": 145,
    "errors": 1,
    "rcode_failures": 1,
    "max_stall_ms": 492.0,  # last ok answer before the blackout: 990 + 19 = 1009; first after: 1500 + 1
    "faults": [
        {
            "action": "blackhole",
            "target": "vip",
            "t_ms": 1000,
            "failover_window_ms": 490.0,
            "failed": 50,
            "detection_ms": None,
            "detection_by_proto": {},
            "pinned_ports": 0,
            "blackholed_ports": 0,
        },
        {
            "action": "kill",
            "target": "rs2",
            "t_ms": 2000,
            "failover_window_ms": 1990.0,
            "failed": 80,
            "detection_ms": 500.0,  # the load is UDP (mostly): UDP weight 0 from 2500 ms counts
            "detection_by_proto": {"udp": 500.0, "tcp": 1200.0},
            "pinned_ports": 1,
            "blackholed_ports": 1,
        },
        {
            "action": "stop",
            "target": "rs3",
            "t_ms": 5000,
            "failover_window_ms": 570.0,
            "failed": 15,
            "detection_ms": 600.0,
            "detection_by_proto": {"udp": 600.0, "tcp": 600.0},
            "pinned_ports": 0,
            "blackholed_ports": 0,
        },
    ],
}


def meta_for(
    run_id: str,
    experiment: str,
    settings: dict[str, Any] | None = None,
    start_ns: int = T0_NS,
    end_ns: int = T0_NS + 6_000 * MS,
) -> dict[str, Any]:
    """A meta.json as the chaos runner writes it, with the repo's lab config."""

    def iso(ns: int) -> str:
        return np.datetime_as_string(np.datetime64(ns, "ns"), unit="ms") + "Z"

    return {
        "run_id": run_id,
        "experiment": experiment,
        "title": f"synthetic {experiment}",
        "lab": load_lab().as_dict(),
        "settings": dict(settings or {}),
        "tools": {"unbound": "1.17.1", "keepalived": "2.2.7", "locust": "2.x"},
        "kernel": "6.1.0-synthetic",
        "guest": {"release": "bookworm", "kernel": "6.1.0-synthetic", "keepalived": "2.2.7",
                  "unbound": "1.17.1", "ipvsadm": "1.31"},
        "start": iso(start_ns),
        "end": iso(end_ns),
        "steady_state": {
            "before": {"answers_from_every_resolver": True, "drop_rate_below_1pct": True},
            "after": {"answers_from_every_resolver": True, "drop_rate_below_1pct": False},
        },
    }


def write_csv(path: Path, header: Iterable[str], rows: Iterable[dict[str, Any]]) -> None:
    """Write dict rows as CSV; None becomes an empty field."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(header))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})


def write_events(path: Path, events: Iterable[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def write_run(
    run_dir: Path,
    meta: dict[str, Any],
    queries: list[dict[str, Any]],
    events: list[dict[str, Any]],
    ipvs: list[dict[str, Any]],
    header: tuple[str, ...] = QUERY_HEADER,
) -> Path:
    """Write a run directory from plain rows."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    write_csv(run_dir / "queries.csv", header, queries)
    write_events(run_dir / "events.jsonl", events)
    write_csv(run_dir / "ipvs.csv", IPVS_HEADER, ipvs)
    return run_dir


def _planted_query(i: int) -> dict[str, Any]:
    """Query i is sent at 10*i ms by worker i % 4; worker w3 reuses one source port, pinned to rs2."""
    t_ms, worker = 10 * i, i % 4
    reused = worker == 3
    resolver = "rs2" if reused else RESOLVERS[i % 3]
    outcome, latency, rcode = "ok", 1.0 + 2.0 * (i % 10), "NOERROR"  # answers arrive out of send order
    blackout = 100 <= i < 150  # fault 0: every query dropped
    rs2_dead = 200 <= i < 400 and (reused or (resolver == "rs2" and i < 320))  # until removal / rollback
    rs3_dead = 500 <= i < 560 and resolver == "rs3"  # until removal by absence
    if blackout or rs2_dead or rs3_dead:
        outcome = "timeout"
    elif (200 <= i < 400 and resolver == "rs2") or (i >= 560 and resolver == "rs3"):
        resolver = "rs1"  # rescheduled after removal
    if i == 50:
        outcome, rcode = "rcode", "SERVFAIL"
    if i == 70:
        outcome = "error"
    answered = outcome in ("ok", "rcode")
    return {
        "t_send_ns": T0_NS + t_ms * MS,
        "latency_ms": latency if answered else None,
        "outcome": outcome,
        "rcode": rcode if answered else None,
        "resolver": resolver if outcome == "ok" else None,
        "proto": "tcp" if i % 25 == 0 else "udp",
        "qname": "who.lab.test",
        "qtype": "TXT",
        "src_port": REUSED_PORT if reused else 20000 + i,
        "worker": f"w{worker}",
    }


def planted_queries() -> list[dict[str, Any]]:
    return [_planted_query(i) for i in range(600)]


def _event(t_ms: int, kind: str, action: str, target: str, **detail: Any) -> dict[str, Any]:
    return {"t_ns": T0_NS + t_ms * MS, "kind": kind, "action": action, "target": target, "detail": detail}


def planted_events() -> list[dict[str, Any]]:
    """Faults at 1000 (no real server), 2000 (rs2), 5000 (rs3); a note at 3000; rollback at 4000.

    Written out of time order on purpose (the reader sorts)."""
    ev = _event
    return [
        ev(1000, "fault", "blackhole", "vip"),
        ev(2000, "fault", "kill", "rs2", real_server=SERVERS["rs2"], signal="KILL"),
        ev(4000, "rollback", "start", "rs2", real_server=SERVERS["rs2"]),
        ev(3000, "note", "mark", "-", text="notes do not end a span"),
        ev(5000, "fault", "stop", "rs3", real_server=SERVERS["rs3"]),
    ]


def planted_ipvs() -> list[dict[str, Any]]:
    """Samples every 100 ms. rs2: absent at 1900 (before its fault), UDP weight 0 but TCP weight 1
    over 2500-3100 (removed from the UDP service only), both weight 0 over 3200-3900, back at 4000.
    rs3: absent from 5600 on."""
    rows = []
    for k in range(61):
        t_ms = 100 * k
        for name, server in SERVERS.items():
            for proto in ("udp", "tcp"):
                weight = 1
                if name == "rs2" and (t_ms == 1900 or 3200 <= t_ms < 4000):
                    if t_ms == 1900:
                        continue
                    weight = 0
                if name == "rs2" and 2500 <= t_ms < 3200 and proto == "udp":
                    weight = 0
                if name == "rs3" and t_ms >= 5600:
                    continue
                rows.append(
                    {
                        "t_ns": T0_NS + t_ms * MS,
                        "vip": VIP,
                        "proto": proto,
                        "real_server": server,
                        "weight": weight,
                        "active_conns": 0,
                        "inactive_conns": k % 5,
                    }
                )
    return rows


def write_planted_run(run_dir: Path, run_id: str = "planted", settings: dict[str, Any] | None = None) -> Path:
    """The ground-truth run of PLANTED."""
    return write_run(
        run_dir, meta_for(run_id, "planted", settings), planted_queries(), planted_events(), planted_ipvs()
    )


# Known lookups: worker -> lookups, each a list of queries (send ms, latency ms or None, outcome).
# Faults: kill rs2 at 1000 (span to the rollback at 3000), stop rs3 at 4000 (span to the end).
PLANTED_LOOKUP_QUERIES: dict[str, list[list[tuple[int, float | None, str]]]] = {
    "glibc": [  # one nameserver, 200 ms timeout, 2 attempts
        [(100, 1.0, "ok")],
        [(900, None, "timeout"), (1100, 2.0, "ok")],  # first try before the fault: in no span
        [(1000, None, "timeout"), (1200, None, "timeout")],  # sent at the fault's instant: failed in span 1
        [(1500, None, "timeout"), (1700, 3.0, "ok")],
        [(2900, None, "timeout"), (3100, 1.5, "ok")],  # answered after the rollback: still span 1
        [(3500, 1.0, "ok")],
        [(4000, None, "timeout"), (4200, None, "error")],
        [(4100, 5.0, "ok")],
    ],
    "musl": [  # two nameservers asked at once, resent after 250 ms
        [(950, None, "timeout"), (950, 4.0, "ok")],
        [(1050, None, "timeout"), (1050, None, "timeout"), (1300, 10.0, "ok"), (1300, 2.0, "ok")],
        [(2000, 1.0, "rcode"), (2000, None, "timeout"), (2500, None, "timeout"), (2500, None, "timeout")],
    ],
    "raw": [[(1200, None, "timeout")], [(1250, 1.0, "ok")], [(4500, None, "timeout")], [(5000, 2.0, "ok")]],
}
_OK_LOOKUP_MS = [1.0, 202.0, 203.0, 201.5, 1.0, 5.0, 4.0, 252.0, 1.0, 2.0]
PLANTED_LOOKUPS: dict[str, Any] = {
    "lookups": 15,
    "lookups_failed": 5,
    "lookups_retried": 8,
    "lookup_p50_ms": float(np.percentile(_OK_LOOKUP_MS, 50)),  # 4.5
    "lookup_p99_ms": float(np.percentile(_OK_LOOKUP_MS, 99)),  # 203 + 0.91 * 49
    "lookup_max_ms": 252.0,  # musl's second lookup: its fourth query's answer (1302) came first
    "faults": [
        {"t_ms": 1000, "lookups": 7, "lookups_failed": 3, "lookups_retried": 5, "lookup_max_ms": 252.0},
        {"t_ms": 4000, "lookups": 4, "lookups_failed": 2, "lookups_retried": 1, "lookup_max_ms": 5.0},
    ],
}


def planted_lookup_rows() -> list[dict[str, Any]]:
    """The rows of PLANTED_LOOKUP_QUERIES, sorted by send time (lookup ids restart in every worker)."""
    rows = []
    for worker, lookups in PLANTED_LOOKUP_QUERIES.items():
        for lookup_id, queries in enumerate(lookups):
            for attempt, (t_ms, latency, outcome) in enumerate(queries):
                answered = latency is not None
                rows.append({
                    "t_send_ns": T0_NS + t_ms * MS, "latency_ms": latency, "outcome": outcome,
                    "rcode": ("NOERROR" if outcome == "ok" else "SERVFAIL") if answered else None,
                    "resolver": "rs1" if outcome == "ok" else None, "proto": "udp", "qname": "who.lab.test",
                    "qtype": "TXT", "src_port": 30000 + len(rows), "worker": worker,
                    "lookup_id": lookup_id, "attempt": attempt,
                })
    return sorted(rows, key=lambda row: row["t_send_ns"])


def write_lookup_run(run_dir: Path, run_id: str = "lookups") -> Path:
    """The ground-truth run of PLANTED_LOOKUPS (faults at 1000 and 4000, a rollback at 3000)."""
    events = [
        _event(1000, "fault", "kill", "rs2", real_server=SERVERS["rs2"]),
        _event(3000, "rollback", "start", "rs2", real_server=SERVERS["rs2"]),
        _event(4000, "fault", "stop", "rs3", real_server=SERVERS["rs3"]),
    ]
    return write_run(run_dir, meta_for(run_id, "lookups"), planted_lookup_rows(), events, planted_ipvs(),
                     header=LOOKUP_HEADER)


def _running_index(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each group value, in row order (a worker's lookup ids)."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    ranks = np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
    out = np.empty(len(groups), dtype=np.int64)
    out[order] = ranks
    return out


def write_bulk_run(run_dir: Path, rows: int, *, rate: float = 20_000.0, seed: int = 0) -> Path:
    """A large run: `rows` queries at `rate`/s from 8 workers over 3 resolvers, rs2 killed at 40 %
    of the run and removed 1.2 s later; worker w7 reuses one source port and stays black-holed on rs2
    until the rollback at 70 %. Each query is its own lookup (lookup_id counts per worker)."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    send = T0_NS + np.sort(rng.uniform(0, rows / rate * 1e9, rows)).astype(np.int64)
    duration = int(send[-1] - T0_NS)
    t_fault, t_removed, t_back = (T0_NS + int(duration * f) for f in (0.4, 0.4, 0.7))
    t_removed += 1_200 * MS
    worker = rng.integers(0, 8, rows)
    pinned = worker == 7
    port = np.where(pinned, REUSED_PORT, rng.integers(32768, 60999, rows)).astype(np.int32)
    resolver = rng.integers(0, 3, rows)
    resolver[pinned] = 1
    dead = (resolver == 1) & (send >= t_fault) & np.where(pinned, send < t_back, send < t_removed)
    resolver[(resolver == 1) & (send >= t_removed) & (send < t_back) & ~pinned] = 0
    outcome = np.where(dead, 1, np.where(rng.random(rows) < 1e-4, 2, 0))
    latency = np.round(rng.lognormal(np.log(0.4), 0.5, rows), 3)
    answered = outcome == 0
    names = pa.array(["rs1", "rs2", "rs3"])
    table = pa.table(
        {
            "t_send_ns": send,
            "latency_ms": pa.array(np.where(answered, latency, np.nan), from_pandas=True),
            "outcome": pa.array(np.array(["ok", "timeout", "error"])[outcome]),
            "rcode": pa.array(np.where(answered, "NOERROR", None)),
            "resolver": pa.array(np.where(answered, names.to_numpy(zero_copy_only=False)[resolver], None)),
            "proto": pa.array(np.where(rng.random(rows) < 0.05, "tcp", "udp")),
            "qname": pa.array(np.full(rows, "who.lab.test")),
            "qtype": pa.array(np.full(rows, "TXT")),
            "src_port": port,
            "worker": pa.array(np.char.add("w", worker.astype(str))),
            "lookup_id": _running_index(worker),
            "attempt": np.zeros(rows, dtype=np.int32),
        }
    )
    pacsv.write_csv(table, run_dir / "queries.csv", pacsv.WriteOptions(quoting_style="needed"))
    samples = np.arange(T0_NS, int(send[-1]), 100 * MS)
    ipvs = []
    for t in samples.tolist():
        for name, server in SERVERS.items():
            if name == "rs2" and t_removed <= t < t_back:
                continue
            for proto in ("udp", "tcp"):
                ipvs.append(
                    {
                        "t_ns": t,
                        "vip": VIP,
                        "proto": proto,
                        "real_server": server,
                        "weight": 1,
                        "active_conns": 0,
                        "inactive_conns": 0,
                    }
                )
    write_csv(run_dir / "ipvs.csv", IPVS_HEADER, ipvs)
    write_events(
        run_dir / "events.jsonl",
        [
            {
                "t_ns": t_fault,
                "kind": "fault",
                "action": "kill",
                "target": "rs2",
                "detail": {"real_server": SERVERS["rs2"]},
            },
            {
                "t_ns": t_back,
                "kind": "rollback",
                "action": "start",
                "target": "rs2",
                "detail": {"real_server": SERVERS["rs2"]},
            },
        ],
    )
    meta = meta_for(run_dir.name, "bulk", {"rows": rows}, T0_NS, int(send[-1]))
    (run_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    return run_dir
