"""Benchmarks of the load generator in the lab: records lost to a SIGKILL, and a long soak.

    python -m bench.load kill [--runs 5] [--rate 1000] [--seed N] [--lab FILE] [--json]
    python -m bench.load soak [--minutes 30] [--rate 1000] [--lab FILE] [--json]

Both run Locust as the chaos runner does (the lab's [load] settings, the client namespace, records
on), against a lab that is up and deployed, and count the queries the VIP received independently of
the generator: the UDP virtual service's InPkts (`ipvsadm -Ln --stats --exact` in the director's
namespace; the raw client sends one packet per query and nothing else uses the VIP).

`kill`: start the generator, let it run a random 6-12 s after its first records, SIGKILL its whole
process group, read its record files back (as `loadtest.merge` would). Records lost = queries the
VIP received - rows on disk, in seconds of load, against the flush interval
(loadtest.records.FLUSH_EVERY_S, 0.5 s; queries still waiting for their answer or timeout are
unrecorded too): at most 1 s of load may be lost, the last row on disk must be at most 1 s older
than the kill, and no gap inside the records as long as a flush interval (a lost flushed chunk would
leave one). Rows of queries whose send failed (outcome error) never reached the counter.

`soak`: run at --rate for --minutes, sampling the generator's RSS (its process group) and the VIP's
packet count every 10 s. After a warm-up (the first tenth, at most 60 s), reports RSS growth from
the first to the last sample (must be < 10 %) and the achieved rate over the run and per minute
(within 1 % of --rate).
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chaos import probes
from chaos.recording import LOAD_START_TIMEOUT_S, locust_command
from lab.model.config import Lab
from lab.model.errors import ActionFailed, LabError, cli_guard
from lab.model.layout import in_ns
from lab.model.parse import load_lab, with_overrides

SAMPLE_EVERY_S = 10.0
LOST_BOUND_S = 1.0  # issue 14: a SIGKILL loses at most the last flush interval's records, <= 1 s of load


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def vip_packets(conn: Any, lab: Lab) -> int:
    """Packets the VIP's UDP port 53 service has received since it was made."""
    ns = lab.network.director_netns
    out = conn.run(in_ns(ns, "ipvsadm -Ln --stats --exact"), hide=True).stdout
    return _udp_in_packets(out, f"{lab.network.vip}:53")


def _udp_in_packets(ipvsadm_stats: str, vip: str) -> int:
    for line in ipvsadm_stats.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "UDP" and fields[1] == vip:
            return int(fields[3])
    raise ActionFailed(f"no UDP virtual service {vip} in the director's IPVS table; run `fab deploy`")


class Generator:
    """One Locust run in the client namespace, recording into a scratch directory in the guest."""

    def __init__(self, conn: Any, lab: Lab, rate: float, name: str, run_time_s: float) -> None:
        self.conn, self.lab = conn, with_overrides(lab, {"load": {"rate": rate}})
        self.remote = f"{probes.GUEST_RUNS}/{name}"
        self.pidfile = f"{self.remote}/load.pid"
        self.pgid: int | None = None
        remote = shlex.quote(self.remote)
        conn.run(f"rm -rf {remote} && mkdir -p {remote}/records", hide=True)
        probes.start_background(conn, locust_command(self.lab, self.remote, run_time_s), self.pidfile,
                                f"{self.remote}/locust.log", "client")
        ready = (f"for i in $(seq {int(LOAD_START_TIMEOUT_S * 10)}); do "
                 f"[ -n \"$(ls {remote}/records/)\" ] && echo ready && exit 0; sleep 0.1; done")
        if self.conn.run(ready, hide=True, warn=True).stdout.strip() != "ready":
            self.remove()
            raise ActionFailed(f"the load generator wrote no records within {LOAD_START_TIMEOUT_S:g} s")
        self.pgid = int(conn.run(f"cat {shlex.quote(self.pidfile)}", hide=True).stdout)

    def sample(self) -> tuple[int, int, int]:
        """(guest time ns, VIP packets, RSS of the generator's processes in KiB), in one round trip."""
        ns = self.lab.network.director_netns
        out = self.conn.run(f"date +%s%N; ps -o rss= -g {self.pgid} | awk '{{s+=$1}} END {{print s+0}}'; "
                            + in_ns(ns, "ipvsadm -Ln --stats --exact"), hide=True).stdout
        t_ns, rss, stats = out.split("\n", 2)
        return int(t_ns), _udp_in_packets(stats, f"{self.lab.network.vip}:53"), int(rss)

    def kill(self) -> int:
        """SIGKILL the generator's process group; the guest time of the kill (ns)."""
        out = self.conn.run(f"date +%s%N; kill -KILL -- -{self.pgid}", hide=True).stdout
        return int(out.split()[0])

    def stop(self) -> None:
        probes.stop_background(self.conn, self.pidfile, "INT", timeout_s=60)

    def records(self, local: Path) -> list[Any]:
        """The generator's worker files, fetched into `local` and read back (cut chunks skipped)."""
        from loadtest.records import SUFFIX, read_worker_file

        names = self.conn.run(f"ls {shlex.quote(self.remote)}/records", hide=True).stdout.split()
        files = []
        for name in (n for n in names if n.endswith(SUFFIX)):
            self.conn.get(f"{self.remote}/records/{name}", str(local / name))
            files.append(read_worker_file(str(local / name)))
        return [f for f in files if f is not None]

    def remove(self) -> None:
        """Kill what is left of the generator's process group and remove its scratch directory."""
        kill = f"kill -KILL -- -{self.pgid} 2>/dev/null; " if self.pgid else ""
        self.conn.run(f"{kill}rm -rf {shlex.quote(self.remote)}", hide=True, warn=True)


def kill_once(conn: Any, lab: Lab, rate: float, after_s: float, n: int) -> dict[str, Any]:
    """One generator SIGKILLed `after_s` after its first records: what was lost, against what."""
    from loadtest.records import ERROR, FLUSH_EVERY_S

    before = vip_packets(conn, lab)
    gen = Generator(conn, lab, rate, f"bench-kill-{n}-{time.time_ns()}", run_time_s=600)
    try:
        time.sleep(after_s)
        t_kill = gen.kill()
        time.sleep(1.0)
        sent = vip_packets(conn, lab) - before
        with tempfile.TemporaryDirectory() as local:
            files = gen.records(Path(local))
            sends = sorted(t for f in files for t in f.columns[0])
            # a query whose send failed (outcome error) never reached the VIP's counter
            errors = sum(o == ERROR for f in files for o in f.columns[6])
    finally:
        gen.remove()
    gaps = [b - a for a, b in zip(sends, sends[1:], strict=False)]
    lost = sent - (len(sends) - errors)
    return {"n": n, "after_s": round(after_s, 1), "sent": sent, "recorded": len(sends), "send_errors": errors,
            "lost": lost,
            "lost_s": round(lost / rate, 3), "flush_s": FLUSH_EVERY_S,
            "tail_s": round((t_kill - sends[-1]) / 1e9, 3) if sends else None,
            "max_gap_s": round(max(gaps) / 1e9, 3) if gaps else None,
            "ok": bool(sends) and lost / rate <= LOST_BOUND_S and (t_kill - sends[-1]) / 1e9 <= LOST_BOUND_S
            and max(gaps or [0]) / 1e9 < FLUSH_EVERY_S}


def soak(conn: Any, lab: Lab, rate: float, minutes: float) -> dict[str, Any]:
    """Run at `rate` for `minutes`, sampling; RSS growth and achieved rate after the warm-up."""
    seconds = minutes * 60
    warmup = min(60.0, seconds / 10)
    gen = Generator(conn, lab, rate, f"bench-soak-{time.time_ns()}", run_time_s=seconds + 120)
    try:
        start = time.monotonic()
        time.sleep(warmup)
        samples = [gen.sample()]  # measured from the end of the warm-up
        while (elapsed := time.monotonic() - start) < seconds:
            time.sleep(min(SAMPLE_EVERY_S, seconds - elapsed))
            samples.append(gen.sample())
            if len(samples) % 6 == 0:
                log(f"  {(time.monotonic() - start) / 60:5.1f} min  RSS {samples[-1][2] / 1024:.1f} MiB  "
                    f"{samples[-1][1] - samples[-2][1]} packets in the last sample")
        gen.stop()
    finally:
        gen.remove()
    (t0, p0, rss0), (t1, p1, rss1) = samples[0], samples[-1]
    achieved = (p1 - p0) / ((t1 - t0) / 1e9)
    minute = max(1, round(60 / SAMPLE_EVERY_S))
    per_minute = [(b[1] - a[1]) / ((b[0] - a[0]) / 1e9)
                  for a, b in zip(samples[::minute], samples[minute::minute], strict=False)]
    rss = [s[2] for s in samples]
    return {"minutes": minutes, "rate": rate, "warmup_s": warmup, "samples": len(samples),
            "measured_s": round((t1 - t0) / 1e9, 1), "achieved_qps": round(achieved, 2),
            "rate_error_pct": round(100 * (achieved - rate) / rate, 3),
            "per_minute_qps": {"min": round(min(per_minute), 1), "max": round(max(per_minute), 1),
                               "n": len(per_minute)} if per_minute else None,
            "rss_kib": {"first": rss0, "last": rss1, "max": max(rss), "median": statistics.median(rss)},
            "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2) if rss0 else None}


def format_kill(rows: list[dict[str, Any]]) -> str:
    head = f"{'#':>3} {'kill at s':>9} {'sent':>7} {'recorded':>8} {'lost':>5} {'lost s':>7} " \
           f"{'tail s':>7} {'max gap s':>9}  ok"
    lines = [head, "-" * len(head)]
    def cell(value: Any) -> str:
        return "-" if value is None else str(value)

    lines += [f"{r['n']:>3} {r['after_s']:>9} {r['sent']:>7} {r['recorded']:>8} {r['lost']:>5} "
              f"{r['lost_s']:>7} {cell(r['tail_s']):>7} {cell(r['max_gap_s']):>9}  "
              f"{'yes' if r['ok'] else 'NO'}"
              for r in rows]
    lost = [r["lost_s"] for r in rows]
    lines.append(f"\nrecords lost after SIGKILL: median {statistics.median(lost):.3f} s of load, max "
                 f"{max(lost):.3f} s (n={len(rows)}); flush interval {rows[0]['flush_s']} s; "
                 f"{sum(r['ok'] for r in rows)}/{len(rows)} lost <= {LOST_BOUND_S:g} s with no gap")
    return "\n".join(lines)


def format_soak(r: dict[str, Any]) -> str:
    pm = r["per_minute_qps"]
    minute = f"; per minute {pm['min']}..{pm['max']} q/s (n={pm['n']})" if pm else ""
    return (f"soak {r['minutes']:g} min at {r['rate']:g} q/s (measured {r['measured_s']} s after a "
            f"{r['warmup_s']:g} s warm-up, {r['samples']} samples):\n"
            f"  achieved {r['achieved_qps']} q/s ({r['rate_error_pct']:+.3f} %){minute}\n"
            f"  generator RSS {r['rss_kib']['first'] / 1024:.1f} -> {r['rss_kib']['last'] / 1024:.1f} MiB "
            f"(max {r['rss_kib']['max'] / 1024:.1f}): growth {r['rss_growth_pct']:+.2f} %")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load",
                                     description="the load generator in the lab: SIGKILL losses, soak")
    sub = parser.add_subparsers(dest="command", required=True)
    kill = sub.add_parser("kill", help="SIGKILL the generator: records lost vs the flush interval")
    kill.add_argument("--runs", type=int, default=5)
    kill.add_argument("--seed", type=int, default=None)
    soak_p = sub.add_parser("soak", help="a long run: generator RSS growth and achieved rate")
    soak_p.add_argument("--minutes", type=float, default=30.0)
    for p in (kill, soak_p):
        p.add_argument("--rate", type=float, default=1000.0, help="queries/s (default 1000)")
        p.add_argument("--lab", default=None, help="lab file (default: lab.toml)")
        p.add_argument("--json", action="store_true")
    return _main(parser.parse_args(argv))


@cli_guard
def _main(args: argparse.Namespace) -> int:
    from lab.providers import connect_lab

    if args.rate <= 0 or (args.command == "kill" and args.runs < 1) or \
            (args.command == "soak" and not 0 < args.minutes <= 24 * 60):
        raise LabError("--rate must be > 0, --runs at least 1, --minutes in (0, 1440]")
    lab = load_lab(args.lab) if args.lab else load_lab()
    conn = connect_lab(lab)
    if args.command == "kill":
        seed = args.seed if args.seed is not None else random.randrange(2**31)
        rng = random.Random(seed)
        rows = []
        for n in range(1, args.runs + 1):
            rows.append(kill_once(conn, lab, args.rate, rng.uniform(6.0, 12.0), n))
            log(f"[{n}/{args.runs}] {rows[-1]}")
        print(format_kill(rows) + f"; seed {seed}")
        ok = all(r["ok"] for r in rows)
        result: Any = rows
    else:
        result = soak(conn, lab, args.rate, args.minutes)
        print(format_soak(result))
        ok = (result["rss_growth_pct"] or 0) < 10 and abs(result["rate_error_pct"]) <= 1
    if args.json:
        print(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
