"""Run one long image-build step: output to a log file, a live status line with elapsed time and the
log's last line, and a one-line LabError naming the log when it fails. Also: required host tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from lab.model.errors import ActionFailed, ConfigError

console = Console(stderr=True)


def require_tools(tools: Mapping[str, str], purpose: str) -> None:
    """A LabError naming the Debian package of the first tool (name -> package) not on PATH."""
    for tool, package in tools.items():
        if not shutil.which(tool):
            raise ConfigError(f"{purpose} needs {tool}; install it: apt-get install {package}")


def last_lines(path: Path, count: int = 1) -> list[str]:
    """The last `count` non-empty lines of a text file (empty when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            tail = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    lines = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-count:]


def _start(title: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None,
           cwd: Path | None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        out.write(f"\n=== {title}: {' '.join(argv)}\n".encode())
        out.flush()
        return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, cwd=cwd)


def _wait(title: str, proc: subprocess.Popen[bytes], log: Path, start: float) -> float:
    """Show progress until `proc` ends (terminated when interrupted); its seconds, or ActionFailed."""
    try:
        with console.status(f"[bold]{title}[/]") as status:
            while proc.poll() is None:
                tail = (last_lines(log) or [""])[0][:90]
                elapsed = time.monotonic() - start
                status.update(f"[bold]{title}[/] {elapsed:5.0f} s  [dim]{escape(tail)}[/]")
                time.sleep(0.5)
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        tail = " | ".join(last_lines(log, 3))
        raise ActionFailed(f"image build: {title} failed (exit {proc.returncode}) after {elapsed:.0f} s; "
                           f"full log: {log}; last lines: {tail}")
    console.print(f"[green]✓[/] {title} [dim]({elapsed:.0f} s)[/]")
    return elapsed


def run_step(title: str, argv: Sequence[str], log: Path, *, env: Mapping[str, str] | None = None,
             cwd: Path | None = None) -> float:
    """Run `argv`, appending its output to `log`; show progress; return the seconds it took."""
    start = time.monotonic()
    return _wait(title, _start(title, argv, log, env, cwd), log, start)


@contextmanager
def alongside(title: str, argv: Sequence[str], log: Path) -> Iterator[None]:
    """Run `argv` in the background (its output to its own `log`) while the body runs, then wait for it
    with progress; ActionFailed when it failed. Ended when the body fails or is interrupted."""
    start, wall = time.monotonic(), time.time()
    proc = _start(title, argv, log, None, None)
    try:
        yield
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    if proc.poll() is None:
        _wait(title, proc, log, start)
    elif proc.returncode == 0:  # done meanwhile: its own time is its log's last write
        console.print(f"[green]✓[/] {title} [dim]({log.stat().st_mtime - wall:.0f} s)[/]")
    else:
        _wait(title, proc, log, start)  # raises, naming the log
