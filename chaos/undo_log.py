"""A run's pending undo on disk: what `fab recover` (or the next run's start) needs after the runner died.

- `RUN_DIR/running.json` (`lab.local.state.RUN_INCOMPLETE`) is written atomically when the run starts and
  again before and after each fault: who the run is (`run_state`) and every undo call
  of its faults so far, the one about to run included. It is removed once the run rolled back and
  saved its data; while it exists the run directory is incomplete, and `python -m reports` says so.
- `state_dir()/active-run.json` names the unfinished run directory of this lab (runs/ is shared
  between labs, the lab state is not). The kernel drops the lab lock with a dead runner, so whoever
  takes the lock next and finds the marker knows that run is dead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chaos.actions import Undo
from chaos.journal import activity_dict, utc_iso
from lab.local.atomic import write_json
from lab.local.state import RUN_INCOMPLETE, state_dir
from lab.model.errors import ActionFailed

MARKER = "active-run.json"


class UndoLog(list[Undo]):
    """The run's undo calls, in the order the faults ran; every change is written to running.json once
    `open` named the run directory."""

    def __init__(self) -> None:
        super().__init__()
        self.path: Path | None = None
        self.state: dict[str, Any] = {}
        self._planned = 0

    def open(self, run_dir: Path, state: dict[str, Any]) -> None:
        """Start logging into run_dir (running.json first, then the lab's marker naming it)."""
        self.path, self.state = run_dir / RUN_INCOMPLETE, state
        self._write()
        write_json(marker_path(), {"run_dir": str(run_dir.resolve()), "pid": os.getpid(),
                                   "run_id": state.get("run_id", run_dir.name)})

    def resume(self, run_dir: Path, state: dict[str, Any]) -> None:
        """Take over the log of a run that died (chaos.recover), as its running.json holds it."""
        self.path = run_dir / RUN_INCOMPLETE
        self.state = {k: v for k, v in state.items() if k != "undo"}
        super().extend(undo_calls(state))

    def expect(self, planned: Iterable[Undo]) -> None:
        """Before a fault: log its undo as known in advance (kept if the action fails half way)."""
        planned = list(planned)
        self._drop_planned()
        super().extend(planned)
        self._planned = len(planned)
        self._write()

    def extend(self, undo: Iterable[Undo]) -> None:  # type: ignore[override]
        """After a fault: its own undo replaces the one expected in advance."""
        self._drop_planned()
        super().extend(undo)
        self._write()

    def close(self) -> None:
        """The run rolled back and saved its data: remove running.json and the lab's marker."""
        if self.path is None:
            return
        clear_marker(self.path.parent)
        self.path.unlink(missing_ok=True)
        self.path = None

    def _drop_planned(self) -> None:
        if self._planned:
            del self[len(self) - self._planned:]
            self._planned = 0

    def _write(self) -> None:
        if self.path is not None:
            write_json(self.path, {**self.state, "undo": [asdict(u) for u in self]})


def marker_path() -> Path:
    return state_dir() / MARKER


def marked_run() -> Path | None:
    """The run directory the lab's marker names (a run that has not finished), or None."""
    try:
        data = json.loads(marker_path().read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return Path("<unreadable marker>")
    return Path(data["run_dir"]) if isinstance(data, dict) and data.get("run_dir") else None


def clear_marker(run_dir: Path | None = None) -> None:
    """Remove the lab's marker (only when it names run_dir, if given)."""
    path = marker_path()
    if run_dir is not None:
        named = marked_run()
        if named is not None and named.resolve() != run_dir.resolve():
            return
    path.unlink(missing_ok=True)


def read_state(run_dir: Path) -> dict[str, Any] | None:
    """running.json of a run directory as written, or None when there is none."""
    path = run_dir / RUN_INCOMPLETE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ActionFailed(f"{path}: unreadable ({err}); move the run directory away and run "
                           "`fab deploy` to clear what it left in the lab") from None
    if not isinstance(data, dict):
        raise ActionFailed(f"{path}: not a JSON object; move the run directory away and run `fab deploy`")
    return data


def undo_calls(state: dict[str, Any]) -> list[Undo]:
    """The undo calls logged in a running.json."""
    return [Undo(str(u["func"]), dict(u.get("arguments") or {})) for u in state.get("undo") or []]


VERSION = 1  # of running.json


def _plain(value: Any) -> Any:
    """JSON-able data (YAML and TOML may hold dates)."""
    return json.loads(json.dumps(value, default=str))


def run_state(run: Any) -> dict[str, Any]:
    """What running.json holds besides the undo calls: enough to rebuild the run (`resume`)."""
    exp = run.exp
    return {
        "version": VERSION, "run_id": run.run_id, "dir": str(run.dir.resolve()), "remote": run.remote,
        "runner_pid": os.getpid(), "started": utc_iso(),
        "experiment": {"name": exp.name, "path": str(exp.path), "title": exp.title,
                       "description": exp.description, "uses_load": exp.uses_load,
                       "timing": asdict(exp.timing), "window_s": exp.window_s, "raw": _plain(exp.raw)},
        "rollbacks": [activity_dict(a) for a in exp.rollbacks],
        "lab": {"source": run.lab.source, "raw": _plain(run.lab.raw)},
        "settings": _plain(run.settings),
    }
