"""`fab matrix --releases bookworm,trixie`: one suite on each guest release in turn, one comparison.

For each release the lab file's lab (with `[vm] release` set) is brought up, the suite runs on it
(`run_matrix`, into <out>/<release>/), and the lab is brought down again, so one VM runs at a time;
then one comparison over every release's cells (its `guest` column names the release of each run).
"""

from __future__ import annotations

from pathlib import Path

from chaos.matrix import compare, completed_runs, matrix_dir, run_matrix
from lab.model.config import RELEASES, Lab
from lab.model.errors import ActionFailed, ConfigError
from lab.model.parse import with_overrides
from lab.providers.qemu import QemuProvider
from lab.ssh.endpoint import connect


def parse_releases(text: str) -> tuple[str, ...]:
    """`bookworm,trixie` -> ("bookworm", "trixie"), or a one-line LabError naming the bad one."""
    names = tuple(name.strip() for name in str(text).split(","))
    for name in names:
        if name not in RELEASES:
            raise ConfigError(f"--releases: {name!r} is not a guest release; allowed: {', '.join(RELEASES)} "
                           "(comma-separated, e.g. --releases bookworm,trixie)")
    if len(set(names)) != len(names):
        raise ConfigError(f"--releases: {text!r} names a release twice")
    return names


def refuse_unless_free(lab: Lab, what: str, boots: str = "brings each release's VM up and down",
                       fresh: str = "brings each release's VM up in turn") -> None:
    """A one-line error unless `what` may boot VMs of its own: the qemu provider (`what` `boots` with
    it), and no lab VM up (`what` `fresh`)."""
    if lab.vm.provider != "qemu":
        raise ConfigError(f"{lab.source}: [vm] provider: {what} {boots} with the qemu provider, "
                          f"not {lab.vm.provider}")
    if QemuProvider(lab).pid() is not None:
        raise ActionFailed(f"a lab VM is up: {what} {fresh}; `fab down` first")


def run_releases(lab: Lab, suite: str, releases: tuple[str, ...]) -> Path:
    """Run `suite` on each release's lab in turn (up, suite, down); the comparison's path."""
    refuse_unless_free(lab, "--releases")
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
        raise ActionFailed(f"no cell of suite {suite!r} completed on any release; see {out_dir}")
    return compare(runs, out_dir)
