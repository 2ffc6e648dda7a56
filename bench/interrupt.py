"""Benchmark: interrupted runs leave no fault behind, and every run directory stays readable.

`python -m bench.interrupt [--runs 20] [--seed N] [--max-at S] [--lab FILE] [--out DIR] [--json]`
against a lab that is up and deployed (`fab up`, `fab deploy`). Each run starts `fab chaos` on one of
the fault experiments (netem, SIGSTOP, SIGKILL, link down) as its own process and interrupts it at a
random moment (uniform in 2 s .. --max-at s after its start) in one of four ways, in turn:
SIGINT, SIGTERM or SIGKILL of the runner, or its SSH connection dropped (its sshd session killed in
the guest). A runner that survives rolls back by itself; after a SIGKILL the lab is recovered by
`fab recover`, or (every other time) by the start of the next run (`fab load`). Then the lab is
checked (`leftovers`): every resolver answers, the IPVS table is whole, no netem qdisc, no stopped
or dead resolver, no link down, sysctls and IPVS timeouts as deployed, no run's guest process
(sampler, load generator, notify reader) left, no unfinished-run marker. Every run directory must be
readable by `python -m reports` or refused by it with a one-line "incomplete run" error.

Prints one row per run and the count of leftovers (must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaos import probes
from chaos.undo_log import marker_path
from lab.local.state import RUN_INCOMPLETE
from lab.model.config import REPO_ROOT, Lab
from lab.model.errors import LabError, cli_guard
from lab.model.parse import load_lab

KINDS = ("SIGINT", "SIGTERM", "SIGKILL", "ssh-drop")
EXPERIMENTS = ("netem-one", "stop-one", "kill-one", "link-down-one")
FAB = str(Path(sys.executable).with_name("fab"))
RUNNER_EXIT_TIMEOUT_S = 300.0
ENDED = "already ended"  # the phase of a run whose runner had exited before its interrupt came

# Processes of a run in the guest name its directory under GUEST_RUNS on their command line. The
# pattern is assembled at run time so that this script's own command line does not match it.
_STRAY = ("d=" + probes.GUEST_RUNS.rsplit("/", 1)[0] + "/; d=${d}runs/; for p in /proc/[0-9]*; do "
          "c=$(tr '\\0' ' ' 2>/dev/null < $p/cmdline) || continue; "
          "case \"$c\" in *\"$d\"*) echo \"${p#/proc/} $c\";; esac; done")

# Kill every sshd session of root except the one this command runs in: the runner loses its connection.
_DROP_SSH = ("anc=' '; p=$$; while [ \"${p:-0}\" -gt 1 ]; do anc=\"$anc$p \"; "
             "p=$(awk '{print $4}' /proc/$p/stat); done; "
             "for d in /proc/[0-9]*; do pid=${d#/proc/}; case \"$anc\" in *\" $pid \"*) continue;; esac; "
             "c=$(tr '\\0' ' ' 2>/dev/null < $d/cmdline) || continue; "
             "case \"$c\" in 'sshd: root@'*) kill -KILL $pid 2>/dev/null && echo $pid;; esac; done")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def leftovers(conn: Any, lab: Lab) -> list[str]:
    """What an interrupted run left in the lab (empty: nothing): failed health checks, silent
    resolvers, real servers missing from IPVS, guest processes of a run, an unfinished-run marker."""
    state = probes.health(conn, lab)
    found = [f"{name} does not answer" for name, ok in state["resolvers"].items() if not ok]
    found += [f"IPVS lacks {rs}" for rs in state["ipvs_missing"]]
    found += list(state["faults"])
    stray = conn.run(f"bash -c {shlex.quote(_STRAY)}", hide=True, warn=True).stdout.splitlines()
    found += [f"guest process left: {' '.join(line.split())[:120]}" for line in stray if line.strip()]
    if marker_path().exists():
        found.append(f"unfinished-run marker {marker_path()} left")
    return found


def drop_ssh(conn: Any) -> int:
    """Kill the guest's root SSH sessions other than conn's own; how many were killed."""
    return len(conn.run(f"bash -c {shlex.quote(_DROP_SSH)}", hide=True, warn=True).stdout.split())


def check_run_dir(run_dir: Path) -> tuple[str, str]:
    """("readable" | "incomplete" | "BAD", detail) for a run directory, as `python -m reports` sees it."""
    if (run_dir / RUN_INCOMPLETE).exists():
        return "BAD", f"{RUN_INCOMPLETE} left (the run was never finished)"
    done = subprocess.run([sys.executable, "-m", "reports", str(run_dir)], capture_output=True, text=True,
                          cwd=REPO_ROOT)
    err = done.stderr.strip()
    if done.returncode == 0:
        return "readable", ""
    one_line = len(err.splitlines()) == 1 and err.startswith("dnslab: error:")
    if one_line and "incomplete run" in err:
        return "incomplete", err
    return "BAD", " ".join(err.split())[-300:]


@dataclass
class Outcome:
    """One interrupted run, as the benchmark saw it."""

    n: int
    kind: str
    experiment: str
    at_s: float
    phase: str = ""
    exit: int | None = None
    recovery: str = "runner"
    left_before: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    dirs: dict[str, str] = field(default_factory=dict)  # run dir -> readable | incomplete | BAD (detail)

    @property
    def ok(self) -> bool:
        return not self.left and all(not v.startswith("BAD") for v in self.dirs.values())


def phase_of(runs: Path, before: set[Path]) -> str:
    """Where the run was when it was interrupted: before its run directory, or how many faults in."""
    new = [d for d in runs.iterdir() if d not in before]
    if not new:
        return "starting"
    events = "".join(p.read_text(errors="replace") for d in new for p in d.glob("events.jsonl"))
    if '"kind": "rollback"' in events:
        return "rolling back"
    faults = events.count('"kind": "fault"')
    return f"{faults} fault(s) in" if faults else "load, no fault yet"


def fab(args: list[str], env: dict[str, str], lab_file: str | None, log_file: Path,
        **popen: Any) -> subprocess.Popen:
    """Start `fab ARGS` in the repo root, its output appended to log_file."""
    lab_args = ["--lab", lab_file] if lab_file else []
    with open(log_file, "a") as out:
        out.write(f"\n$ fab {' '.join(args + lab_args)}\n")
        out.flush()
        return subprocess.Popen([FAB, *args, *lab_args], cwd=REPO_ROOT, env=env, stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, **popen)


def interrupt_once(n: int, kind: str, experiment: str, at_s: float, *, conn: Any, lab: Lab,
                   lab_file: str | None, runs: Path, log_file: Path, recover_by_next_run: bool,
                   wait_for: Callable[[Path], bool] | None = None) -> Outcome:
    """Run `fab chaos EXPERIMENT`, interrupt it `at_s` after its start (or, with `wait_for`, once
    wait_for(runs) is true), let it or the recovery finish, and check the lab and the run dirs."""
    out = Outcome(n, kind, experiment, at_s)
    env = {**os.environ, "DNSLAB_RUNS": str(runs)}
    before = set(runs.iterdir())
    runner = fab(["chaos", "--experiment", experiment], env, lab_file, log_file, start_new_session=True)
    start = time.monotonic()
    while runner.poll() is None:
        elapsed = time.monotonic() - start
        if (wait_for(runs) if wait_for else elapsed >= at_s) or elapsed > RUNNER_EXIT_TIMEOUT_S:
            break
        time.sleep(0.1)
    out.at_s = round(time.monotonic() - start, 1)
    out.phase = phase_of(runs, before) if runner.poll() is None else ENDED
    if runner.poll() is None:
        if kind == "ssh-drop":
            if not drop_ssh(conn):
                out.phase += " (no session to drop)"
        else:
            runner.send_signal(getattr(signal, kind))
    try:
        out.exit = runner.wait(timeout=RUNNER_EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        runner.kill()
        out.exit = runner.wait()
        out.left.append(f"the runner did not end within {RUNNER_EXIT_TIMEOUT_S:g} s after {kind}")
    conn.close()  # a dropped session may have been this one's neighbour: start afresh
    if kind == "SIGKILL" or marker_path().exists():
        out.left_before = leftovers(conn, lab)
        if recover_by_next_run:
            out.recovery = "next run's start"
            step = fab(["load", "--seconds", "2", "--rate", "50"], env, lab_file, log_file)
        else:
            out.recovery = "fab recover"
            step = fab(["recover"], env, lab_file, log_file)
        if step.wait(timeout=RUNNER_EXIT_TIMEOUT_S) != 0:
            out.left.append(f"{out.recovery} exited {step.returncode}; see {log_file}")
    out.left += leftovers(conn, lab)
    for run_dir in sorted(d for d in runs.iterdir() if d not in before and d.is_dir()):
        status, detail = check_run_dir(run_dir)
        out.dirs[run_dir.name] = f"{status} ({detail})" if detail and status == "BAD" else status
    return out


def table(outcomes: list[Outcome]) -> str:
    head = f"{'#':>3} {'interrupt':9} {'experiment':14} {'at s':>6} {'phase':18} {'exit':>5} " \
           f"{'recovered by':17} {'left before':>11} {'left after':>10}  run dirs"
    lines = [head, "-" * len(head)]
    for o in outcomes:
        dirs = ", ".join(sorted(set(o.dirs.values()))) or "none made"
        lines.append(f"{o.n:>3} {o.kind:9} {o.experiment:14} {o.at_s:>6.1f} {o.phase:18} "
                     f"{'' if o.exit is None else o.exit:>5} {o.recovery:17} {len(o.left_before):>11} "
                     f"{len(o.left):>10}  {dirs}")
        lines += [f"      left: {item}" for item in o.left]
    return "\n".join(lines)


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    dirs = [v.split(" ", 1)[0] for o in outcomes for v in o.dirs.values()]
    return {"runs": len(outcomes), "live": sum(o.phase != ENDED for o in outcomes),
            "leftovers": sum(len(o.left) for o in outcomes),
            "runs_with_leftovers": sum(bool(o.left) for o in outcomes),
            "run_dirs": {s: dirs.count(s) for s in ("readable", "incomplete", "BAD")},
            "kinds": {k: sum(o.kind == k for o in outcomes) for k in KINDS},
            "faults_left_by_sigkill_before_recovery": sum(len(o.left_before) for o in outcomes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.interrupt",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="interrupted runs (default 20)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--max-at", type=float, default=45.0, help="latest interrupt, s after start (45)")
    parser.add_argument("--lab", default=None, help="lab file (default: lab.toml)")
    parser.add_argument("--out", default=None, help="runs directory (default: a new temporary one)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON too")
    args = parser.parse_args(argv)
    return _main(args)


@cli_guard
def _main(args: argparse.Namespace) -> int:
    from lab.providers import connect_lab

    if args.runs < 1 or args.max_at < 2:
        raise LabError("--runs must be at least 1 and --max-at at least 2 (seconds)")
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    rng = random.Random(seed)
    lab = load_lab(args.lab) if args.lab else load_lab()
    runs = Path(args.out or tempfile.mkdtemp(prefix="dnslab-interrupt-"))
    runs.mkdir(parents=True, exist_ok=True)
    log_file = runs / "bench.log"
    kinds = [KINDS[i % len(KINDS)] for i in range(args.runs)]
    rng.shuffle(kinds)
    conn = connect_lab(lab)
    if found := leftovers(conn, lab):
        raise LabError(f"the lab is not clean before the benchmark: {'; '.join(found)}; run `fab deploy`")
    log(f"seed {seed}; runs in {runs}; runners' output in {log_file}")
    outcomes: list[Outcome] = []
    kills = 0
    for n, kind in enumerate(kinds, 1):
        experiment = EXPERIMENTS[(n - 1) % len(EXPERIMENTS)]
        at_s = round(rng.uniform(2.0, args.max_at), 1)
        by_next = kind == "SIGKILL" and kills % 2 == 1
        kills += kind == "SIGKILL"
        log(f"[{n}/{args.runs}] {experiment}, {kind} at {at_s:.1f} s ...")
        outcome = interrupt_once(n, kind, experiment, at_s, conn=conn, lab=lab, lab_file=args.lab, runs=runs,
                                 log_file=log_file, recover_by_next_run=by_next)
        log(f"    phase {outcome.phase}, exit {outcome.exit}, recovered by {outcome.recovery}, "
            f"{len(outcome.left_before)} left before / {len(outcome.left)} after; {outcome.dirs}")
        outcomes.append(outcome)
    conn.close()
    print(table(outcomes))
    result = summary(outcomes)
    kinds_done = ", ".join(f"{k} {v}" for k, v in result["kinds"].items())
    print(f"\n{result['runs']} interrupted runs ({kinds_done}), {result['live']} of them before the run "
          f"had ended (the others: lower --max-at); seed {seed}")
    print(f"leftovers after recovery: {result['leftovers']} (in {result['runs_with_leftovers']} runs)")
    print(f"left by SIGKILL before recovery: {result['faults_left_by_sigkill_before_recovery']} findings")
    print(f"run directories: {result['run_dirs']['readable']} readable, {result['run_dirs']['incomplete']} "
          f"marked incomplete, {result['run_dirs']['BAD']} neither")
    if args.json:
        print(json.dumps({**result, "seed": seed, "outcomes": [asdict(o) for o in outcomes]}, indent=2))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
