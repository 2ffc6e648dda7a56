"""`python -m reports RUN_DIR --journal journal.json`: Chaos Toolkit's journal shown in the run's report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.synthetic import write_planted_run
from lab.model.errors import LabError
from reports.build import build_report
from reports.ctk_journal import JOURNAL_FILE, journal_context, read_journal

JOURNAL = {
    "chaoslib-version": "1.44.0", "status": "completed", "deviated": True, "start": "s", "end": "e",
    "duration": 61.5, "experiment": {"title": "Kill one"},
    "steady_states": {
        "before": {"steady_state_met": True, "probes": [
            {"activity": {"name": "success ratio", "tolerance": [0.999, 1.0]}, "output": 1.0,
             "status": "succeeded", "tolerance_met": True}]},
        "after": {"steady_state_met": False, "probes": [
            {"activity": {"name": "p99 latency (ms)", "tolerance": [0, 80]}, "output": 123.4,
             "status": "succeeded", "tolerance_met": False}]},
    },
    "run": [{"activity": {"name": "kill_resolver rs2 #1", "pauses": {"before": 0.2},
                          "provider": {"func": "kill_resolver", "arguments": {"resolver": "rs2"}}},
             "status": "succeeded", "start": "t1", "duration": 0.3}],
    "rollbacks": [{"activity": {"name": "make sure rs2 runs", "provider": {"func": "start_resolver"}},
                   "status": "failed", "start": "t2", "duration": 0.1}],
}


def test_context_has_each_probe_verdict_and_activity():
    ctx = journal_context(JOURNAL)
    assert [(p["phase"], p["name"], p["value"], p["verdict"]) for p in ctx["probes"]] == [
        ("before", "success ratio", "1", "ok"), ("after", "p99 latency (ms)", "123.4", "deviated")]
    assert [(a["part"], a["call"], a["pause"], a["status"]) for a in ctx["activities"]] == [
        ("method", "kill_resolver(resolver=rs2)", "0.2", "succeeded"),
        ("rollback", "start_resolver()", "", "failed")]
    assert ctx["deviated"] and ctx["status"] == "completed"


def test_cli_renders_the_journal_with_the_run(tmp_path):
    run = write_planted_run(tmp_path / "run")
    journal = tmp_path / "journal.json"
    journal.write_text(json.dumps(JOURNAL))
    res = subprocess.run([sys.executable, "-m", "reports", str(run), "--journal", str(journal)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    page = (run / "report.html").read_text()
    assert "Chaos Toolkit journal" in page and "kill_resolver(resolver=rs2)" in page and "123.4" in page


def test_the_journal_saved_in_the_run_directory_is_found(tmp_path):
    run = write_planted_run(tmp_path / "run")
    build_report(run)
    assert "Chaos Toolkit journal" not in (run / "report.html").read_text()
    (run / JOURNAL_FILE).write_text(json.dumps(JOURNAL))
    build_report(run)
    assert "Chaos Toolkit journal" in (run / "report.html").read_text()


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", r"bad\.json: not a JSON journal"),
    ('{"status": "completed"}', r"bad\.json: not a Chaos Toolkit journal \(no experiment, run\)"),
])
def test_bad_journal_is_one_line(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(LabError, match=message) as err:
        read_journal(path)
    assert "\n" not in str(err.value)


def test_bad_journal_on_the_command_line_has_no_traceback(tmp_path):
    run = write_planted_run(tmp_path / "run")
    missing = tmp_path / "none.json"
    res = subprocess.run([sys.executable, "-m", "reports", str(run), "--journal", str(missing)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "cannot read the journal" in res.stderr
