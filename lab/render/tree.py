"""The rendered files of a lab written out as a tree (`python -m lab render --out`): the systemd
runtime's files (lab/render/files.py) or the compose project's (lab/render/compose.py)."""

from __future__ import annotations

from pathlib import Path

from lab.model.config import Lab
from lab.render.compose import compose_files
from lab.render.files import render_files


def write_tree(lab: Lab, out: str | Path) -> list[Path]:
    """Write every file deploy installs under `out`, at its guest path (for the compose runtime: the
    compose project's files); return the paths."""
    base = Path(out)
    written = []
    files = compose_files(lab) if lab.stack.runtime == "compose" else render_files(lab)
    for guest_path, file in files.items():
        target = base / guest_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.content)
        target.chmod(file.mode)
        written.append(target)
    return written
