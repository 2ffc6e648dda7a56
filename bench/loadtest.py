"""Benchmark: the Locust DNS user against dnsperf, its glibc client, recording overhead, fixed-rate accuracy.

`python -m bench.loadtest [--seconds S] [--runs N] [--rate-seconds S] [--realtime] [--json]`
(host only, as root: it starts its own Unbound on 127.0.0.x at a high port, serving the lab zone
only, pinned to CPU 1; the generators run on CPU 0). Each round runs dnsperf, the Locust user
(raw client) without records and with records, and the glibc client model without records, so all
share the machine's conditions; the medians are printed. Then one fixed-rate run (4 users, 1,000
queries/s) measures the achieved rate and the send-time jitter from the records, next to the timer
noise of a plain sleep loop as reference.

Locust's throughput and CPU are sampled through its web UI's /stats/requests between two moments
after warm-up, so start-up costs do not count. CPU per query is user + system time over queries.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.query

from loadtest.records import read_worker_file, worker_files

ADDRESS = "127.0.0.79"
LOCUST = [sys.executable, "-m", "locust"]
SERVER_CPU, CLIENT_CPU = "1", "0"
WARMUP_S = 1.5
TICK = os.sysconf("SC_CLK_TCK")
LOCUSTFILE = str(Path(__file__).resolve().parent / "dns.py")
MIX = ["--dns-who-share", "0", "--dns-names", "www.lab.test:A"]
TOOLS = ("dnsperf", "locust", "locust_records", "locust_glibc")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port(address: str, kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for both UDP and TCP on `address`, in the high range."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind((address, 0))
            port = probe.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
                other.bind((address, port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no free port on {address}")


def realtime_prefix(priority: int) -> list[str]:
    """`chrt -f PRIORITY` when this process may use SCHED_FIFO, else nothing (run at normal priority)."""
    command = ["chrt", "-f", str(priority)]
    if shutil.which("chrt") and subprocess.run([*command, "true"], capture_output=True).returncode == 0:
        return command
    return []


def start_unbound(workdir: Path, address: str, port: int, name: str = "bench",
                  realtime: bool = False) -> subprocess.Popen:
    """Unbound with the lab zone on address:port, one thread, pinned to SERVER_CPU; waits until it answers.

    `realtime` runs it SCHED_FIFO (for light loads on a busy machine, so it is not starved).
    """
    from ipaddress import IPv4Address

    from lab.model.config import Resolver
    from lab.model.parse import load_lab
    from lab.render.files import render_unbound

    conf = workdir / "unbound.conf"
    conf.write_text(render_unbound(load_lab(), Resolver(name, IPv4Address(address)), port=port,
                                   threads=1, username="", extra_allow=["127.0.0.0/8"]))
    with open(workdir / "unbound.log", "w") as errors:
        priority = realtime_prefix(10) if realtime else []
        proc = subprocess.Popen([*priority, "taskset", "-c", SERVER_CPU, "unbound", "-d", "-c", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=errors)
    query = dns.message.make_query("who.lab.test", "TXT")
    for _ in range(100):
        try:
            dns.query.udp(query, address, port=port, timeout=0.1)
            return proc
        except (OSError, dns.exception.Timeout):
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"unbound did not start: {(workdir / 'unbound.log').read_text()}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def run_dnsperf(address: str, port: int, seconds: float, workdir: Path) -> dict:
    """dnsperf (1 client, 100 outstanding) for qps and CPU, then 2 s verbose for p50/p99."""
    data = workdir / "queries.txt"
    data.write_text("www.lab.test A\n" * 1000)
    base = ["taskset", "-c", CLIENT_CPU, "dnsperf", "-s", address, "-p", str(port), "-d", str(data),
            "-c", "1", "-q", "100"]
    cpu = _children_cpu()
    out = subprocess.run([*base, "-l", str(seconds)], capture_output=True, text=True, check=True).stdout
    cpu = _children_cpu() - cpu
    qps_found = re.search(r"Queries per second:\s+([\d.]+)", out)
    completed_found = re.search(r"Queries completed:\s+(\d+)", out)
    if not qps_found or not completed_found or not int(completed_found.group(1)):
        raise RuntimeError(f"dnsperf completed no queries: {' '.join(out.split())[-300:]}")
    qps, completed = float(qps_found.group(1)), int(completed_found.group(1))
    verbose = subprocess.run([*base, "-l", "2", "-v"], capture_output=True, text=True, check=True).stdout
    latencies = [float(line.rsplit(" ", 1)[1]) * 1e3 for line in verbose.splitlines()
                 if line.startswith("> ")]
    return {"qps": qps, "cpu_us": cpu / completed * 1e6, "p50_ms": percentile(latencies, 0.5),
            "p99_ms": percentile(latencies, 0.99)}


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _requests(web_port: int) -> tuple[int, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/stats/requests", timeout=5) as reply:
        data = json.load(reply)
    total = next((s["num_requests"] for s in data["stats"] if s["name"] == "Aggregated"), 0)
    return data.get("user_count", 0), total


def run_locust(address: str, port: int, seconds: float, records: Path | None, client: str = "raw") -> dict:
    """The Locust user (1 user, window 100, one reused socket) for qps, CPU, and p50/p99 from records.

    With no failure every lookup is one query, so Locust's requests/s (lookups) are queries/s."""
    web_port = free_port("127.0.0.1", socket.SOCK_STREAM)
    args = ["taskset", "-c", CLIENT_CPU, *LOCUST, "-f", LOCUSTFILE, "--autostart",
            "-u", "1", "-r", "1", "--web-host", "127.0.0.1",
            "--web-port", str(web_port), "--host", f"{address}:{port}", "--dns-socket-mode", "reuse",
            "--dns-window", "100", "--dns-client", client, *MIX, "--loglevel", "WARNING"]
    if records:
        args += ["--dns-records", str(records)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        pid = proc.pid  # taskset execs Locust in place
        deadline = time.monotonic() + 60
        while True:
            try:
                users, total = _requests(web_port)
                if users and total:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"locust did not start: {proc.stderr.read()[-2000:]}")
            time.sleep(0.2)
        time.sleep(WARMUP_S)
        t0, cpu0, n0 = time.monotonic(), _process_cpu(pid), _requests(web_port)[1]
        time.sleep(seconds)
        t1, cpu1, n1 = time.monotonic(), _process_cpu(pid), _requests(web_port)[1]
        proc.send_signal(2)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = {"qps": (n1 - n0) / (t1 - t0), "cpu_us": (cpu1 - cpu0) / max(1, n1 - n0) * 1e6}
    if records:
        latencies = _latencies_ms(records)
        result.update(p50_ms=percentile(latencies, 0.5), p99_ms=percentile(latencies, 0.99))
    return result


def _latencies_ms(records: Path) -> list[float]:
    values: list[float] = []
    for path in worker_files(str(records)):
        wf = read_worker_file(path)
        if wf is not None:
            values.extend(ns / 1e6 for ns in wf.columns[1] if ns >= 0)
    return values


_PROBE = """
import time
late, end = [], time.monotonic() + {seconds}
while time.monotonic() < end:
    t = time.monotonic(); time.sleep(0.004); late.append(time.monotonic() - t - 0.004)
late.sort()
print(late[int(0.99 * len(late))] * 1e3)
"""


def timer_noise_p99_ms(seconds: float, priority: list[str]) -> float:
    """The reference for jitter: p99 lateness of a plain 4 ms sleep loop on the generator's CPU."""
    command = [*priority, "taskset", "-c", CLIENT_CPU, sys.executable, "-c", _PROBE.format(seconds=seconds)]
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def run_fixed_rate(address: str, port: int, seconds: float, records: Path, rate: float = 1000.0,
                   users: int = 4, priority: list[str] = ()) -> dict:
    """`users` users at `rate` queries/s in total: achieved rate and send-time jitter from the records,
    with the machine's timer noise (same CPU and priority) measured just before as the reference."""
    noise = timer_noise_p99_ms(min(seconds, 3.0), list(priority))
    args = [*priority, "taskset", "-c", CLIENT_CPU, *LOCUST, "-f", LOCUSTFILE, "--headless", "-u", str(users),
            "-r", str(users), "-t", f"{int(seconds)}s", "--host", f"{address}:{port}",
            "--dns-rate", str(rate), "--dns-records", str(records), "--dns-timeout-ms", "100",
            "--loglevel", "WARNING", "--only-summary"]
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                   timeout=seconds + 60)
    sends: dict[tuple[str, int], array] = {}
    for path in worker_files(str(records)):
        wf = read_worker_file(path)
        for t_send, user in zip(wf.columns[0], wf.columns[3], strict=True) if wf else ():
            sends.setdefault((wf.worker, user), array("q")).append(t_send)
    if not sends:
        raise RuntimeError(f"the fixed-rate run recorded no queries in {records}")
    return {"target_qps": rate, **send_accuracy(list(sends.values()), rate / users),
            "timer_noise_p99_ms": noise, "realtime": bool(priority)}


def send_accuracy(sends_per_user: list[array], user_rate: float) -> dict:
    """Achieved rate (sum over users) and |send time - schedule| p99, the schedule fitted per user."""
    interval = 1e9 / user_rate
    achieved, jitter = 0.0, []
    for sends in sends_per_user:
        times = sorted(sends)
        if len(times) < 2:
            continue
        achieved += (len(times) - 1) / ((times[-1] - times[0]) / 1e9)
        start = statistics.median(t - i * interval for i, t in enumerate(times))
        jitter.extend(abs(t - start - i * interval) / 1e6 for i, t in enumerate(times))
    return {"achieved_qps": achieved, "jitter_p99_ms": percentile(jitter, 0.99)}


def summarize(rounds: list[dict], fixed: dict) -> dict:
    """Medians of each tool's figures, the ratios, and the fixed-rate figures."""
    def median(tool: str, key: str) -> float:
        return statistics.median(r[tool][key] for r in rounds)

    summary = {tool: {key: median(tool, key) for key in rounds[0][tool]} for tool in TOOLS}
    summary["ratio_qps"] = summary["locust"]["qps"] / summary["dnsperf"]["qps"]
    summary["ratio_glibc_raw"] = statistics.median(r["locust_glibc"]["qps"] / r["locust"]["qps"]
                                                   for r in rounds)
    summary["ratio_cpu"] = summary["locust"]["cpu_us"] / summary["dnsperf"]["cpu_us"]
    summary["recording_cost_pct"] = 100 * (1 - summary["locust_records"]["qps"] / summary["locust"]["qps"])
    summary["fixed_rate"] = {**fixed, "error_pct": 100 * (fixed["achieved_qps"] / fixed["target_qps"] - 1)}
    summary["runs"] = len(rounds)
    return summary


def format_summary(s: dict) -> str:
    lines = [f"{'tool':16} {'qps':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/q':>9} {'CPU %':>6}"]
    for tool in TOOLS:
        t = s[tool]
        lines.append(f"{tool:16} {t['qps']:10.0f} {t.get('p50_ms', float('nan')):8.3f} "
                     f"{t.get('p99_ms', float('nan')):8.3f} {t['cpu_us']:9.2f} "
                     f"{t['cpu_us'] * t['qps'] / 1e4:6.1f}")
    f = s["fixed_rate"]
    lines += [
        f"locust/dnsperf qps ratio: {s['ratio_qps']:.3f} (raw client, target >= 1.0); "
        f"CPU/query ratio {s['ratio_cpu']:.3f}",
        f"glibc/raw client qps ratio: {s['ratio_glibc_raw']:.3f} (median of the rounds' ratios, "
        "target >= 0.9)",
        f"recording cost: {s['recording_cost_pct']:.1f} % of throughput (target < 10 %)",
        f"fixed rate: target {f['target_qps']:.0f} q/s, achieved {f['achieved_qps']:.1f} "
        f"({f['error_pct']:+.2f} %, target within 1 %), send jitter p99 {f['jitter_p99_ms']:.3f} ms "
        "(target < 2 ms)",
        f"  reference: a plain sleep loop on the same CPU{' (SCHED_FIFO)' if f['realtime'] else ''} "
        f"is late by {f['timer_noise_p99_ms']:.3f} ms at p99 (machine noise)",
        f"(medians of {s['runs']} rounds; Locust p50/p99 from its per-query records; CPU % is the share of "
        "one core the tool got: on a busy host, multi-threaded dnsperf gets more shares than one Locust "
        "process, so compare CPU us/query there)",
    ]
    return "\n".join(lines)


def _positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: a finite number of `kind` greater than 0."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; any failure is one line `bench.loadtest: error: ...` (exit 1, 130 on Ctrl-C)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("bench.loadtest: error: interrupted", file=sys.stderr)
        return 130
    except subprocess.CalledProcessError as err:
        detail = " ".join(str(err.stderr or err.output or "").split())[-300:]
        print(f"bench.loadtest: error: {err.cmd[0] if err.cmd else 'a tool'} failed (exit {err.returncode})"
              f"{': ' + detail if detail else ''}", file=sys.stderr)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as err:
        print(f"bench.loadtest: error: {' '.join(str(err).split())[:400]}", file=sys.stderr)
    return 1


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): `python -m bench.loadtest: error: ...`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _main(argv: list[str] | None) -> int:
    parser = _Parser(prog="python -m bench.loadtest", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=_positive(float), default=5.0,
                        help="measured seconds per run (default 5)")
    parser.add_argument("--runs", type=_positive(int), default=3,
                        help="rounds of dnsperf / locust / locust+records / locust glibc")
    parser.add_argument("--rate-seconds", type=_positive(float), default=None,
                        help="seconds of the 1,000 q/s run (default: --seconds)")
    parser.add_argument("--realtime", action="store_true",
                        help="run the fixed-rate generator SCHED_FIFO (chrt), shielding it from a busy host")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    if not shutil.which("dnsperf") or not shutil.which("unbound"):
        print("bench.loadtest: error: needs dnsperf and unbound on PATH", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="dnslab-bench-"))
    port = free_port(ADDRESS)
    server = start_unbound(workdir, ADDRESS, port)
    try:
        rounds = []
        for i in range(args.runs):
            records = workdir / f"records-{i}"
            row = {"dnsperf": run_dnsperf(ADDRESS, port, args.seconds, workdir),
                   "locust": run_locust(ADDRESS, port, args.seconds, None),
                   "locust_records": run_locust(ADDRESS, port, args.seconds, records),
                   "locust_glibc": run_locust(ADDRESS, port, args.seconds, None, client="glibc")}
            shutil.rmtree(records, ignore_errors=True)
            log(f"round {i + 1}/{args.runs}: " + ", ".join(f"{k} {v['qps']:.0f} q/s" for k, v in row.items()))
            rounds.append(row)
        fixed = run_fixed_rate(ADDRESS, port, args.rate_seconds or args.seconds, workdir / "records-rate",
                               priority=realtime_prefix(5) if args.realtime else [])
        log("fixed-rate run done")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(rounds, fixed)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
