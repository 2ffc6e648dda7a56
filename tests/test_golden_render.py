"""Golden files of `python -m lab render`: the whole rendered tree of each lab variant, byte for byte.

Each variant is a small lab file, tests/golden/render/VARIANT/lab.toml (keys not set take their
defaults); its expected output is tests/golden/render/VARIANT/expected.txt: the command's stdout, then
every file it wrote with its mode. Files that are verbatim copies of repo files (the load generator,
the exit watcher) are named, not inlined, and checked byte for byte against the repo. Each variant runs
the CLI's own entry point in this process (fast); one variant also runs as `python -m lab render`.
`DNSLAB_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden_render.py` rewrites the expected files.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

from lab.__main__ import main as lab_main
from lab.model.config import CHECK_TYPES, IPVLAN_MODES, KEEPALIVED_NETNS, MISC_TOOLS
from tests.conftest import REPO
from tests.golden_files import GOLDEN, compare

RENDER = GOLDEN / "render"
VARIANTS = sorted(p.name for p in RENDER.iterdir() if (p / "lab.toml").is_file())
SKIP_DIRS = {".git", ".venv", ".lab", "__pycache__", "runs", "matrix", "tests", "node_modules"}


@functools.cache
def repo_files() -> tuple[tuple[Path, int], ...]:
    """(path, size) of every file in the repo outside tests, caches and run data."""
    out = []
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")]
        out += [(Path(root, n), Path(root, n).stat().st_size) for n in names]
    return tuple(out)


@functools.cache
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copies(files: list[Path]) -> dict[Path, Path]:
    """Rendered file -> the repo file (relative to the repo) it is a verbatim copy of, for the copies."""
    out = {}
    for path in files:
        size, digest = path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()
        source = next((s for s, n in repo_files() if n == size and sha256(s) == digest), None)
        if source is not None:
            out[path] = source.relative_to(REPO)
    return out


def argv(variant: str, out: Path) -> list[str]:
    return ["render", "--lab", f"tests/golden/render/{variant}/lab.toml", "--out", str(out)]


def document(variant: str, out: Path, stdout: str) -> str:
    """The golden text: the command, its stdout (OUT for the directory), then each written file; a
    directory of copies of one repo folder's files is one line."""
    files = sorted(p for p in out.rglob("*") if p.is_file())
    copied: dict[str, list[tuple[Path, Path]]] = defaultdict(list)  # guest dir -> (guest path, repo path)
    for path, source in copies(files).items():
        copied[str(path.parent.relative_to(out))].append((path, source))
    collapsed = {d for d, pairs in copied.items()
                 if len(pairs) > 1 and len({s.parent for _, s in pairs}) == 1}

    lines = [f"$ python -m lab render --lab tests/golden/render/{variant}/lab.toml --out OUT"]
    for line in stdout.splitlines():
        path = Path(line)
        rel = str(path.parent.relative_to(out)) if path.is_relative_to(out) else ""
        if rel in collapsed:
            line = f"OUT/{rel}/*"
            if lines[-1] == line:
                continue
        lines.append(line.replace(str(out), "OUT"))
    for guest_dir in sorted(collapsed):
        pairs = copied[guest_dir]
        src_dir = pairs[0][1].parent
        suffixes = {s.suffix for _, s in pairs}
        assert len(suffixes) == 1, pairs
        every = sorted(p.name for p in (REPO / src_dir).glob(f"*{suffixes.pop()}"))
        assert sorted(s.name for _, s in pairs) == every, f"/{guest_dir}: not every file of {src_dir}"
        assert all(g.name == s.name for g, s in pairs), pairs
        modes = {f"{g.stat().st_mode & 0o777:04o}" for g, _ in pairs}
        lines += ["", f"==== /{guest_dir}/ (mode {', '.join(sorted(modes))}): a copy of every "
                      f"*{pairs[0][1].suffix} in the repo's {src_dir}/ ===="]
    for path in files:
        guest = "/" + str(path.relative_to(out))
        mode = f"{path.stat().st_mode & 0o777:04o}"
        if str(path.parent.relative_to(out)) in collapsed:
            continue
        source = next((s for g, s in copied.get(str(path.parent.relative_to(out)), []) if g == path), None)
        if source is not None:
            lines += ["", f"==== {guest} (mode {mode}): a copy of the repo's {source.name} ===="]
            continue
        text = path.read_text()
        text = text[:-1] if text.endswith("\n") else text + "\n(no newline at end of file)"
        lines += ["", f"==== {guest} (mode {mode}) ====", text]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_tree_matches_the_golden_file(variant, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.chdir(REPO)
    assert lab_main(argv(variant, out)) == 0
    printed = capsys.readouterr()
    assert printed.err == ""
    compare(document(variant, out, printed.out), RENDER / variant / "expected.txt")


def test_the_command_line_renders_the_same(tmp_path):
    """`python -m lab render` itself, as a user runs it, for the variant with every kind of file."""
    variant, out = "lb-removal-on-exit", tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "lab", *argv(variant, out)], capture_output=True,
                            text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    compare(document(variant, out, result.stdout), RENDER / variant / "expected.txt")


def test_the_variants_cover_every_mode_the_config_accepts():
    """A new ipvlan mode, check type, namespace or MISC_CHECK tool needs its golden variant."""
    seen: dict[str, set[str]] = defaultdict(set)
    for variant in VARIANTS:
        raw = tomllib.loads((RENDER / variant / "lab.toml").read_text())
        network, check = raw.get("network", {}), raw.get("check", {})
        seen["ipvlan_mode"].add(network.get("ipvlan_mode", "l3s"))
        seen["keepalived_netns"].add(network.get("keepalived_netns", "root"))
        seen["vlan"].add(network.get("vlan", True))
        seen["type"].add(check.get("type", "DNS_CHECK"))
        seen["removal_on_exit"].add(check.get("removal_on_exit", False))
        if check.get("type") == "MISC_CHECK":
            seen["misc_tool"].add(check.get("misc_tool", "dig"))
    assert seen["ipvlan_mode"] == set(IPVLAN_MODES)
    assert seen["keepalived_netns"] == set(KEEPALIVED_NETNS)
    assert seen["type"] == set(CHECK_TYPES)
    assert seen["misc_tool"] == set(MISC_TOOLS)
    assert seen["vlan"] == seen["removal_on_exit"] == {True, False}
