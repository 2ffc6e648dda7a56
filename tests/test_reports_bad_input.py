"""Bad run directories: `python -m reports` prints one line naming the file and the problem, exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.synthetic import write_planted_run
from reports.cli import main
from tests.conftest import REPO


def _report(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reports", str(run_dir)], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def _edit(name: str, change: Callable[[str], str]) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        (run / name).write_text(change((run / name).read_text()))

    return apply


def _remove(name: str) -> Callable[[Path], None]:
    return lambda run: (run / name).unlink()


def _header_only(run: Path) -> None:
    (run / "queries.csv").write_text((run / "queries.csv").read_text().splitlines()[0] + "\n")


def _unknown_server(run: Path) -> None:
    events = (run / "events.jsonl").read_text().replace("192.168.100.13:53", "192.168.100.99:53")
    (run / "events.jsonl").write_text(events)


def _append_bytes(name: str, data: bytes) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        with (run / name).open("ab") as fh:
            fh.write(data)

    return apply


def _replace_by_dir(name: str) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        (run / name).unlink()
        (run / name).mkdir()

    return apply


def _cut_rows(run: Path) -> None:
    """The last 10 rows gone, the file still ending at a row boundary; meta.json records 600 rows."""
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "queries_rows": 600}))
    lines = (run / "queries.csv").read_text().splitlines(keepends=True)
    (run / "queries.csv").write_text("".join(lines[:-10]))


CASES = {
    "missing queries.csv": (_remove("queries.csv"), ["queries.csv", "missing"]),
    "missing meta.json": (_remove("meta.json"), ["meta.json", "missing"]),
    "misspelled column": (
        _edit("queries.csv", lambda t: t.replace("latency_ms", "latncy_ms", 1)),
        ["queries.csv", "missing column 'latency_ms'", "'latncy_ms'"],
    ),
    "missing ipvs column": (
        _edit("ipvs.csv", lambda t: t.replace(",weight,", ",", 1)),
        ["ipvs.csv", "missing column 'weight'"],
    ),
    "empty run": (_header_only, ["queries.csv", "no queries recorded"]),
    "empty file": (_edit("queries.csv", lambda t: ""), ["queries.csv", "empty file"]),
    "unknown real_server": (
        _unknown_server,
        ["events.jsonl", "line 5", "'192.168.100.99:53'", "never appears in ipvs.csv"],
    ),
    "events name a server, no ipvs.csv": (_remove("ipvs.csv"), ["events.jsonl", "ipvs.csv is missing"]),
    "corrupt CSV (text in an int column)": (
        _edit("queries.csv", lambda t: t.replace("\n1767225600010000000,", "\nsoon,", 1)),
        ["queries.csv", "corrupt CSV"],
    ),
    "corrupt CSV (short row)": (
        _edit("queries.csv", lambda t: t + "1767225606000000000,1.0,ok\n"),
        ["queries.csv", "corrupt CSV"],
    ),
    "unknown outcome": (
        _edit("queries.csv", lambda t: t.replace(",ok,", ",okay,", 1)),
        ["queries.csv", "'outcome'", "'okay'"],
    ),
    "ok without latency": (
        _edit("queries.csv", lambda t: t.replace("\n1767225600010000000,3.0,", "\n1767225600010000000,,", 1)),
        ["queries.csv", "outcome 'ok' have no latency_ms"],
    ),
    "events line not JSON": (
        _edit("events.jsonl", lambda t: t + "{oops\n"),
        ["events.jsonl", "line 6", "not valid JSON"],
    ),
    "event kind unknown": (
        _edit("events.jsonl", lambda t: t.replace('"note"', '"remark"')),
        ["events.jsonl", "line 4", "'remark'"],
    ),
    "meta not JSON": (_edit("meta.json", lambda t: t[:-5]), ["meta.json", "not valid JSON"]),
    "events not UTF-8": (_append_bytes("events.jsonl", b'{"note": "caf\xe9"}\n'),
                         ["events.jsonl", "line 6", "not UTF-8"]),
    "event t_ns past 2^63": (
        _edit("events.jsonl", lambda t: t + json.dumps({"t_ns": 2**63, "kind": "note", "action": "x",
                                                        "target": "run"}) + "\n"),
        ["events.jsonl", "line 6", "t_ns 9223372036854775808 is outside"],
    ),
    "events.jsonl a directory": (_replace_by_dir("events.jsonl"), ["events.jsonl", "not a regular file"]),
    "ipvs.csv a directory": (_replace_by_dir("ipvs.csv"), ["ipvs.csv", "not a regular file"]),
    "queries.csv cut at a row boundary": (_cut_rows, ["queries.csv", "590 rows, but meta.json records 600"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    breaker, words = CASES[case]
    run = write_planted_run(tmp_path / "run")
    breaker(run)
    with pytest.raises(SystemExit) as exit_:
        main([str(run)])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnslab: error: "), err
    for word in words:
        assert word in lines[0]
    assert out == ""
    assert not (run / "report.html").exists()


def test_bad_input_from_the_command_line(tmp_path: Path) -> None:
    """The same through `python -m reports`: no traceback, exit 2."""
    run = write_planted_run(tmp_path / "run")
    _unknown_server(run)
    result = _report(run)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "never appears in ipvs.csv" in result.stderr


def test_not_a_directory(tmp_path: Path) -> None:
    result = _report(tmp_path / "nope")
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"dnslab: error: {tmp_path / 'nope'}: not a run directory "
        "(expected meta.json and queries.csv inside)"
    )


def test_a_run_with_the_right_row_count_reads(tmp_path: Path) -> None:
    run = write_planted_run(tmp_path / "run")
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "queries_rows": 600}))
    assert main([str(run)]) == 0


def test_good_run_still_works(tmp_path: Path) -> None:
    """Control for the cases above: the unbroken run reports and exits 0."""
    run = write_planted_run(tmp_path / "run")
    result = _report(run)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["queries"] == 600


def test_an_interrupted_run_without_ipvs_samples_reads_and_a_finished_one_does_not(tmp_path: Path) -> None:
    """A run interrupted before its IPVS sampler's first row (bench.interrupt found one: SIGINT 5.6 s
    in, its rollback event naming a real server) stays readable; a finished run missing its samples
    is still refused, since then its collection failed."""
    run = write_planted_run(tmp_path / "run")
    (run / "ipvs.csv").unlink()
    result = _report(run)
    assert result.returncode == 2 and "ipvs.csv is missing or empty" in result.stderr

    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "status": "interrupted"}))
    result = _report(run)
    assert result.returncode == 0, result.stderr
    assert (run / "report.html").exists()
