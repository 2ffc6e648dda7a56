"""`fab matrix --releases bookworm,trixie`: one suite on each guest release in turn, one comparison.

For each release the lab file's lab (with `[vm] release` set) is brought up, the suite runs on it
(`run_matrix`, into <out>/<release>/), and the lab is brought down again, so one VM runs at a time;
then one comparison over every release's cells (its `guest` column names the release of each run).
"""

from __future__ import annotations

from pathlib import Path

from chaos.matrix import compare, completed_runs, matrix_dir, run_matrix
from lab.config import RELEASES, Lab, with_overrides
from lab.endpoint import connect
from lab.errors import LabError
from lab.providers.qemu import QemuProvider


def parse_releases(text: str) -> tuple[str, ...]:
    """`bookworm,trixie` -> ("bookworm", "trixie"), or a one-line LabError naming the bad one."""
    names = tuple(name.strip() for name in str(text).split(","))
    for name in names:
        if name not in RELEASES:
            raise LabError(f"--releases: {name!r} is not a guest release; allowed: {', '.join(RELEASES)} "
                           "(comma-separated, e.g. --releases bookworm,trixie)")
    if len(set(names)) != len(names):
        raise LabError(f"--releases: {text!r} names a release twice")
    return names


def run_releases(lab: Lab, suite: str, releases: tuple[str, ...]) -> Path:
    """Run `suite` on each release's lab in turn (up, suite, down); the comparison's path."""
    if lab.vm.provider != "qemu":
        raise LabError(f"{lab.source}: [vm] provider: --releases brings each release's VM up and down "
                       f"with the qemu provider, not {lab.vm.provider}")
    if QemuProvider(lab).pid() is not None:
        raise LabError("a lab VM is up: --releases brings each release's VM up in turn; `fab down` first")
    out_dir = matrix_dir(f"{suite}-releases")
    runs: list[str] = []
    for release in releases:
        release_lab = with_overrides(lab, {"vm": {"release": release}})
        provider = QemuProvider(release_lab)
        endpoint = provider.up()
        try:
            with connect(endpoint) as conn:
                run_matrix(release_lab, conn, suite, out_dir=out_dir / release)
        finally:
            provider.down()
        runs += completed_runs(out_dir / release)
    if not runs:
        raise LabError(f"no cell of suite {suite!r} completed on any release; see {out_dir}", 1)
    return compare(runs, out_dir)
