"""Bad input on the command lines: one line naming the problem, a non-zero exit, no traceback, and
nothing changed (fab load, lab render --out, loadtest.merge, bench.loadtest, python -m chaos check).
The exact text of the fab load, lab and chaos check errors: tests/golden/errors/cli.txt."""

from __future__ import annotations

import csv
import inspect
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.records import OK, Recorder
from tests.conftest import REPO

FAB = str(Path(sys.executable).with_name("fab"))


def add_rows(rec: Recorder, t_send: list[int], latency: list[int], query: list[int],
             resolver: list[str]) -> None:
    """One batch of ok UDP rows for user 0 (lookup_id/attempt too when the records carry them)."""
    n = len(t_send)
    extra = [[0] * n for name in ("lookup_id", "attempt")
             if name in inspect.signature(Recorder.add_batch).parameters]
    rec.add_batch(t_send, latency, [1000 + i for i in range(n)], 0, query, resolver, [OK] * n, [0] * n,
                  [0] * n, *extra)


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120, **kw)


def _one_line(result: subprocess.CompletedProcess[str], prefix: str = "dnslab: error: ") -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0]


# --- fab load -----------------------------------------------------------------------------------------

def test_fab_load_accepts_fractional_seconds(tmp_path):
    """2.5 s parses; the run then stops at the missing lab file, before any connection."""
    result = _run([FAB, "load", "--seconds", "2.5", "--lab", str(tmp_path / "absent.toml")])
    assert _one_line(result).endswith("absent.toml: no such lab file; copy lab.toml from the repo root")


# --- python -m lab render --out ----------------------------------------------------------------------

def test_render_out_is_not_writable(tmp_path):
    if not shutil.which("setpriv") or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run as nobody")
    target = tmp_path / "ro"
    target.mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    result = _run([*as_nobody, sys.executable, "-m", "lab", "render", "--out", str(target / "x")])
    assert result.returncode == 2
    assert _one_line(result) == (f"dnslab: error: --out {target / 'x'}: cannot write {target / 'x'}: "
                                 "Permission denied; give a directory you can write to")


# --- python -m loadtest.merge ------------------------------------------------------------------------

def _worker(directory: Path, name: str, t0: int) -> None:
    rec = Recorder(str(directory), name, [("who.lab.test", "TXT")])
    add_rows(rec, [t0, t0 + 1], [1_000_000, 2_000_000], [0, 0], ["rs1", "rs2"])
    rec.close()


def test_merge_keeps_the_good_workers_and_names_the_bad_one(tmp_path):
    _worker(tmp_path, "good-1", 100)
    _worker(tmp_path, "good-2", 50)
    payload = b'{"worker": "bad-3", "byteorder": '  # a metadata chunk cut mid-JSON
    (tmp_path / "bad-3.dq").write_bytes(struct.pack("<2sBxI", b"DQ", ord("M"), len(payload)) + payload)
    result = _run([sys.executable, "-m", "loadtest.merge", str(tmp_path)])
    assert result.returncode == 1
    line = _one_line(result, "loadtest.merge: error: ")
    assert f"{tmp_path / 'bad-3.dq'}: unreadable worker file (JSONDecodeError" in line
    assert line.endswith(f"left out of {tmp_path / 'queries.csv'}")
    assert result.stdout == f"4 queries -> {tmp_path / 'queries.csv'}\n"
    with open(tmp_path / "queries.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["t_send_ns"], r["worker"]) for r in rows] == [
        ("50", "good-2.u0"), ("51", "good-2.u0"), ("100", "good-1.u0"), ("101", "good-1.u0")]


def test_merge_names_a_worker_whose_rows_point_nowhere(tmp_path):
    _worker(tmp_path, "good-1", 100)
    rec = Recorder(str(tmp_path), "bad-2", [("who.lab.test", "TXT")])
    add_rows(rec, [5], [1], [7], [""])  # query index 7: no such query
    rec.close()
    result = _run([sys.executable, "-m", "loadtest.merge", str(tmp_path)])
    assert result.returncode == 1
    assert "worker bad-2: inconsistent records (IndexError" in _one_line(result, "loadtest.merge: error: ")
    assert result.stdout.startswith("2 queries -> ")


# --- python -m bench.loadtest ------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["--runs", "0"], "argument --runs: must be greater than 0, got 0"),
    (["--seconds", "abc"], "argument --seconds: not a number: 'abc'"),
    (["--rate-seconds", "-1"], "argument --rate-seconds: must be greater than 0, got -1"),
])
def test_bench_rejects_bad_arguments_at_once(args, message):
    result = _run([sys.executable, "-m", "bench.loadtest", *args])
    assert result.returncode == 2
    prefix = "python -m bench.loadtest: error: "
    assert _one_line(result, prefix) == prefix + message


def test_bench_failure_is_one_line(tmp_path):
    """dnsperf that completes nothing (a stand-in on PATH) is reported in one line, exit 1."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "dnsperf"
    fake.write_text("#!/bin/sh\necho 'Queries completed: 0'\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    result = _run([sys.executable, "-m", "bench.loadtest", "--runs", "1", "--seconds", "0.5"], env=env)
    assert result.returncode == 1
    assert "dnsperf completed no queries" in _one_line(result, "bench.loadtest: error: ")


# --- python -m chaos check ---------------------------------------------------------------------------

def test_chaos_check_passes_every_shipped_file():
    files = sorted(str(p) for p in (REPO / "chaos" / "experiments").glob("*.yaml"))
    result = _run([sys.executable, "-m", "chaos", "check", *files])
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(files)
    assert all(": ok (" in line for line in result.stdout.splitlines())


def test_chaos_check_reports_each_bad_file_in_one_line(tmp_path):
    good = REPO / "chaos" / "experiments" / "netem-one.yaml"
    bad = tmp_path / "netem-bad.yaml"
    bad.write_text(good.read_text().replace("delay_ms: 150", 'delay_ms: "1ms; id > x; echo "'))
    assert bad.read_text() != good.read_text()
    odd = tmp_path / "x y;id.yaml"
    odd.write_text(good.read_text())
    result = _run([sys.executable, "-m", "chaos", "check", str(good), str(bad), str(odd)])
    assert result.returncode == 2
    assert result.stdout.startswith(f"{good}: ok (")
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in result.stderr
    assert "arguments.delay_ms: netem: must be a number, got '1ms; id > x; echo '" in errors[0]
    assert errors[1].startswith(f"dnslab: error: {odd}: experiment name 'x y;id'")


def test_chaos_check_gives_the_same_error_as_fab_chaos(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: t\nmethod:\n  - {type: action, name: a, provider: {type: python, "
                   "module: chaos.ctk.actions, func: kill_resolver, arguments: {resolver: rs9}}}\n")
    check = _run([sys.executable, "-m", "chaos", "check", str(bad)])
    chaos = _run([FAB, "chaos", "--experiment", str(bad)],
                 env={**os.environ, "DNSLAB_STATE": str(tmp_path / "state")})
    assert check.returncode == chaos.returncode == 2
    assert _one_line(check) == _one_line(chaos)
    assert "no resolver named 'rs9'" in _one_line(check)


def test_the_summary_json_is_written_atomically(tmp_path, monkeypatch):
    from bench.synthetic import write_planted_run
    from lab.local import atomic
    from reports import build

    run = write_planted_run(tmp_path / "run")
    written = []
    real = atomic.write_atomic
    monkeypatch.setattr(build, "write_atomic",
                        lambda p, d, mode=0o644: written.append(Path(p).name) or real(p, d))
    summary = build.build_report(run)
    assert set(written) == {"report.html", "summary.json"}
    assert json.loads((run / "summary.json").read_text()) == summary
