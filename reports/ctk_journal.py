"""A Chaos Toolkit journal (`chaos run`'s journal.json) shown in a run's report (pure, no chaos import).

The dnslab control saves it as RUN_DIR/ctk-journal.json; `python -m reports RUN_DIR --journal FILE`
takes another. The report shows its status, the steady-state probes Chaos Toolkit judged (value,
tolerance, verdict, before and after the method) and every activity it played, with its pause.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.model.errors import LabError

JOURNAL_FILE = "ctk-journal.json"


def read_journal(path: Path) -> dict[str, Any]:
    """The journal at `path`; a one-line LabError when it is not a Chaos Toolkit journal."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise LabError(f"{path}: cannot read the journal: {err.strerror}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise LabError(f"{path}: not a JSON journal ({err}); give the journal.json `chaos run` wrote") \
            from None
    missing = [k for k in ("experiment", "status", "run") if not isinstance(data, dict) or k not in data]
    if missing:
        raise LabError(f"{path}: not a Chaos Toolkit journal (no {', '.join(missing)}); give the "
                       "journal.json `chaos run` wrote")
    return data


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def journal_context(journal: dict[str, Any]) -> dict[str, Any]:
    """What the report shows of a journal, as plain strings."""
    probes = []
    for phase in ("before", "after"):
        state = (journal.get("steady_states") or {}).get(phase) or {}
        for run in state.get("probes") or []:
            activity = run.get("activity") or {}
            ok = run.get("tolerance_met")
            probes.append({"phase": phase, "name": _text(activity.get("name")),
                           "value": _text(run.get("output")),
                           "tolerance": _text(activity.get("tolerance")),
                           "verdict": {True: "ok", False: "deviated"}.get(ok, _text(run.get("status"))),
                           "css": {True: "pass", False: "fail"}.get(ok, "na")})
    activities = []
    for part in ("run", "rollbacks"):
        for run in journal.get(part) or []:
            activity = run.get("activity") or {}
            provider = activity.get("provider") or {}
            arguments = ", ".join(f"{k}={v}" for k, v in (provider.get("arguments") or {}).items())
            activities.append({
                "part": "method" if part == "run" else "rollback", "name": _text(activity.get("name")),
                "call": f"{provider.get('func', '')}({arguments})",
                "pause": _text((activity.get("pauses") or {}).get("before")),
                "status": _text(run.get("status")),
                "start": _text(run.get("start")), "duration": _text(run.get("duration")),
                "css": "pass" if run.get("status") == "succeeded" else "fail"})
    return {"status": _text(journal.get("status")), "deviated": bool(journal.get("deviated")),
            "version": _text(journal.get("chaoslib-version")), "start": _text(journal.get("start")),
            "end": _text(journal.get("end")), "duration": _text(journal.get("duration")),
            "probes": probes, "activities": activities}


def find_journal(run_dir: Path, journal: Path | None) -> dict[str, Any] | None:
    """The journal given, else the one the dnslab control saved in the run directory, else None."""
    if journal is not None:
        return read_journal(journal)
    saved = run_dir / JOURNAL_FILE
    return read_journal(saved) if saved.is_file() else None
