"""`fab deploy` / `fab teardown`: build or remove the lab stack in the guest over one Fabric connection.

Everything is rendered and validated first (lab.ops.validate, before any change). Then, in three SSH
round trips: read the guest's file hashes, stage the files that differ (SFTP), and run one generated
step script in the guest that checks each step and acts only where the state differs, streaming one
`@@ STATUS NAME` line per step, which is shown live.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from rich.console import Console

from lab.local.runlock import locked
from lab.model.config import Lab
from lab.model.errors import ActionFailed
from lab.model.layout import (
    COMPOSE_DIR,
    DEPLOY_SCRIPT,
    HOME,
    LOADTEST_DIR,
    NETWORK_SCRIPT,
    RESOLVER_DROPIN,
    STAGE,
    STATE,
    UNBOUND_DIR,
)
from lab.model.removal import require_support
from lab.model.stackconf import Stack
from lab.ops.compose_steps import compose_preamble, compose_steps
from lab.ops.services import COMPOSE_ABSENT, deploy_steps, preamble
from lab.ops.validate import validate_for
from lab.render.compose import compose_files, docker_host_files
from lab.render.files import GuestFile, loadtest_files, render_files, render_script
from lab.render.netplan import Step, network_plan
from lab.ssh import remote
from lab.versions import require_release

LINE_RE = re.compile(r"^@@ (ok|changed|failed|absent) (.*)$")
STYLE = {"ok": "dim green", "changed": "yellow", "failed": "bold red", "absent": "dim"}


@dataclass
class Summary:
    """What a deploy or teardown did: counts per status, the failed step and its stderr."""

    action: str = "deploy"
    ok: int = 0
    changed: int = 0
    failed: int = 0
    seconds: float = 0.0
    steps: list[tuple[str, str]] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)  # each step's wall time, by name
    failed_step: str | None = None
    error: str = ""

    def changed_steps(self) -> list[str]:
        return [name for status, name in self.steps if status == "changed"]

    def line(self) -> str:
        return (f"{self.action}: {self.ok} ok, {self.changed} changed, {self.failed} failed "
                f"({self.seconds:.1f} s)")


class _StepStream:
    """A file-like sink for the runner's stdout: parses step lines as they arrive."""

    def __init__(self, on_step: Callable[[str, str], None], on_detail: Callable[[str], None]) -> None:
        self.buffer = ""
        self.on_step, self.on_detail = on_step, on_detail

    def write(self, text: str) -> int:
        self.buffer += text
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            match = LINE_RE.match(line)
            if match:
                self.on_step(match.group(1), match.group(2))
            elif line.strip():
                self.on_detail(line)
        return len(text)

    def flush(self) -> None:
        pass


def guest_hashes(conn, paths: list[str]) -> dict[str, str]:
    """sha256 of each path in the guest (missing files are left out), in one round trip."""
    dirs = sorted({str(PurePosixPath(f"{STAGE}{p}").parent) for p in paths})
    command = (f"mkdir -p {' '.join(dirs)} && "
               f"sha256sum {' '.join(shlex.quote(p) for p in paths)} 2>/dev/null; true")
    out = remote.run(conn, command).stdout
    hashes = {}
    for line in out.splitlines():
        digest, _, path = line.partition("  ")
        hashes[path] = digest
    return hashes


def plan(lab: Lab, *, clear_faults: bool = True) -> tuple[dict[str, GuestFile], list[Step], str]:
    """What a deploy of the lab's runtime installs and runs: (files by guest path, steps, the steps'
    shell preamble)."""
    if lab.stack.runtime == "compose":
        files = {**compose_files(lab), **docker_host_files(lab), **loadtest_files()}
        return files, compose_steps(lab, files, clear_faults=clear_faults), compose_preamble(lab, files)
    files = render_files(lab)
    steps = deploy_steps(lab, files, network_plan(lab), clear_faults=clear_faults)
    return files, steps, preamble(lab, files)


def run_steps(conn, lab: Lab, steps: list[Step], shell: str, mode: str, summary: Summary,
              console: Console, verbose: bool, extra: Mapping[str, bytes] | None = None) -> Summary:
    """Upload the runner script of `steps` (and any staged files), run it in `mode`, and tally its
    lines. `shell` is the runner's preamble (helpers the steps use)."""
    script = render_script(lab, steps, title=f"dnslab {summary.action} runner", script=DEPLOY_SCRIPT,
                           preamble=shell)
    remote.upload(conn, {**(extra or {}), DEPLOY_SCRIPT: script.encode()})
    details: list[str] = []
    last = [time.monotonic()]

    def on_step(status: str, name: str) -> None:
        now = time.monotonic()
        took, last[0] = now - last[0], now
        summary.steps.append((status, name))
        summary.step_seconds[name] = took
        if status in ("ok", "absent"):
            summary.ok += 1
        elif status == "changed":
            summary.changed += 1
        else:
            summary.failed += 1
            summary.failed_step = name
        if verbose or status in ("changed", "failed"):
            console.print(f"  [{STYLE[status]}]{status:8}[/] {took:5.1f}s  {name}", highlight=False)

    def on_detail(line: str) -> None:
        details.append(line)
        console.print(f"           {line}", style="red", highlight=False, markup=False)

    stream = _StepStream(on_step, on_detail)
    result = remote.run(conn, f"bash {DEPLOY_SCRIPT} {mode}", out_stream=stream, hide="stderr")
    stream.write("\n")
    if result.exited != 0:
        summary.error = "\n".join(details) or result.stderr.strip() or f"exit {result.exited}"
        if not summary.failed:
            summary.failed = 1
            summary.failed_step = summary.failed_step or f"{mode} runner"
    return summary


def _finish(summary: Summary, start: float, console: Console) -> Summary:
    summary.seconds = time.monotonic() - start
    style = "bold red" if summary.failed else "bold green"
    console.print(f"[{style}]{summary.line()}[/]", highlight=False)
    if summary.failed:
        console.print(f"failed step: {summary.failed_step}: {summary.error}", style="red",
                      markup=False, highlight=False)
        console.print("steps after it did not run; fix the cause and re-run: it continues from "
                      "the current state", style="red")
    return summary


@locked("deploy")
def deploy(lab: Lab, conn, *, console: Console | None = None, verbose: bool = True,
           clear_faults: bool = True) -> Summary:
    """Build or update the stack in the guest; idempotent. Returns the summary (never raises on a
    failed step: `summary.failed` says so; raises LabError for bad config or an unreachable host).
    It first clears what an experiment may have left (lab.ops.leftovers), unless `clear_faults` is off
    (a deploy within an experiment, which must not end the experiment's other faults)."""
    console = console or Console(stderr=True)
    start = time.monotonic()
    files, steps, shell = plan(lab, clear_faults=clear_faults)
    require_release(conn, lab)
    validate_for(lab, render_files(lab), conn)  # the same Unbound and Keepalived configs under compose
    if lab.check.removal_on_exit:  # the guest's Keepalived must provide it; checked before any change
        require_support(lab, remote.run(conn, "keepalived --version 2>&1 | head -1").stdout)
    _retire_other_runtime(lab, conn, console, verbose)
    current = guest_hashes(conn, list(files))
    staged = {f"{STAGE}{path}": file.content for path, file in files.items()
              if current.get(path) != file.sha256}
    summary = Summary("deploy")
    run_steps(conn, lab, steps, shell, "up", summary, console, verbose, staged)
    return _finish(summary, start, console)


@locked("teardown")
def teardown(lab: Lab, conn, *, console: Console | None = None, verbose: bool = True) -> Summary:
    """Remove everything deploy made: units (compose: the project, Docker's daemon and rules), IPVS
    services, network, files, state."""
    return _teardown(lab, conn, console or Console(stderr=True), verbose)


def _teardown(lab: Lab, conn, console: Console, verbose: bool) -> Summary:
    start = time.monotonic()
    _, steps, shell = plan(lab)
    summary = Summary("teardown")
    if lab.stack.runtime == "systemd":
        remote.run(conn, f"mkdir -p {STATE}; [ ! -x {NETWORK_SCRIPT} ] || "
                         f"{NETWORK_SCRIPT} down >/dev/null 2>&1; true")
    run_steps(conn, lab, steps, shell, "down", summary, console, verbose)
    remote.run(conn, f"systemctl daemon-reload; systemctl reset-failed 'dnslab*' 2>/dev/null; "
                     f"rm -rf {STATE} {LOADTEST_DIR} {COMPOSE_DIR}; "
                     f"rmdir {UNBOUND_DIR} {HOME} {PurePosixPath(RESOLVER_DROPIN).parent} 2>/dev/null; true")
    return _finish(summary, start, console)


def deployed_runtime(conn) -> str | None:
    """Which runtime's stack the guest holds: "systemd" (its network script), "compose" (the project's
    containers), or None."""
    out = remote.run(conn, f"[ ! -e {NETWORK_SCRIPT} ] || echo systemd; "
                           f"{{ {COMPOSE_ABSENT}; }} || echo compose").stdout.split()
    return out[0] if out else None


def _retire_other_runtime(lab: Lab, conn, console: Console, verbose: bool) -> None:
    """Tear down the other runtime's stack when the guest holds one (a matrix cell may switch)."""
    other = deployed_runtime(conn)
    if other is None or other == lab.stack.runtime:
        return
    console.print(f"[yellow]the guest runs the {other} runtime's stack: tearing it down first[/]")
    summary = _teardown(replace(lab, stack=Stack(runtime=other)), conn, console, verbose)
    if summary.failed:
        raise ActionFailed(f"tearing down the {other} runtime's stack failed at {summary.failed_step}: "
                           f"{summary.error}")
