"""Where the lab keeps its local state: images, the running VM, keys, runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lab.model.config import REPO_ROOT

# In a run directory while its runner has not finished (rolled back and saved its data): the pending
# undo (chaos.undo_log). `python -m reports` refuses such a directory; `fab recover` finishes it.
RUN_INCOMPLETE = "running.json"
RUN_INTERRUPTED = "interrupted"  # meta.json "status" of a run stopped before its end (and rolled back)


def state_dir() -> Path:
    """The lab's state directory: $DNSLAB_STATE, else `.lab/` at the repo root."""
    path = Path(os.environ.get("DNSLAB_STATE") or REPO_ROOT / ".lab")
    path.mkdir(parents=True, exist_ok=True)
    return path


def sub(name: str) -> Path:
    """A subdirectory of the state directory, created on first use."""
    path = state_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """`reports/runs/`, where every run directory lives (docs/run-directory.md)."""
    path = Path(os.environ.get("DNSLAB_RUNS") or REPO_ROOT / "reports" / "runs")
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Built images, shared by every lab state: $DNSLAB_CACHE, else `.lab/cache/` at the repo root."""
    path = Path(os.environ.get("DNSLAB_CACHE") or REPO_ROOT / ".lab" / "cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def lab_key() -> Path:
    """The lab's own SSH key, state_dir()/ssh/id_ed25519: root logs in with it, whatever the provider."""
    return sub("ssh") / "id_ed25519"


def ensure_key() -> Path:
    """The lab's SSH key, generated at first use (the repo's Vagrantfile makes the same one)."""
    key = lab_key()
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dnslab", "-f", str(key)],
                       check=True, stdin=subprocess.DEVNULL)
    return key
