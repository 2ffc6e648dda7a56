"""Benchmark: boot-to-SSH of the lab image. Direct-kernel boot (what `fab up` does) against GRUB boot of
the same image (the reference), both started at once so they share whatever else loads the host.
Prints each time, the ratio, and the host's load average.

    .venv/bin/python -m bench.image [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab.image.accel import choose_accel
from lab.image.build import ImageArtifacts, build
from lab.local.state import ensure_key
from lab.model.config import Lab
from lab.model.parse import load_lab
from lab.providers.base import ssh_answers
from lab.providers.qemu import create_overlay, free_port, qemu_argv, stop_pid
from lab.ssh.endpoint import Endpoint

TIMEOUT_S = 600.0


def _boot(lab: Lab, image: ImageArtifacts, workdir: Path, name: str, grub: bool, accel: str,
          key: Path) -> float:
    """Seconds from qemu start to a command over SSH, for one fresh overlay of the lab image."""
    overlay, pidfile = workdir / f"{name}.qcow2", workdir / f"{name}.pid"
    create_overlay(image, overlay)
    port = free_port()
    argv = qemu_argv(image=image, overlay=overlay, port=port, pubkey=Path(f"{key}.pub"),
                     serial=workdir / f"{name}.serial.log", pidfile=pidfile, accel=accel, cpus=lab.vm.cpus,
                     memory_mib=lab.vm.memory_mib, grub=grub)
    start = time.monotonic()
    subprocess.run(argv, check=True, start_new_session=True)
    pid = int(pidfile.read_text())
    try:
        endpoint = Endpoint("127.0.0.1", port, "root", str(key), known_hosts=(str(workdir / "known_hosts"),))
        while not ssh_answers(endpoint, accept_new_host_key=True):  # our own fresh VM: pin its first key
            if time.monotonic() - start > TIMEOUT_S:
                raise SystemExit(f"{name}: no SSH after {TIMEOUT_S:.0f} s; see {workdir}/{name}.serial.log")
            time.sleep(0.5)
        return time.monotonic() - start
    finally:
        stop_pid(pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="boot pairs to measure (default 1)")
    args = parser.parse_args()
    lab = load_lab()
    start = time.monotonic()
    image = build(lab)
    print(f"image {image.hash[:16]} ready in {time.monotonic() - start:.1f} s (cached when this is seconds)")
    accel = choose_accel(lab.vm.accel, image.kernel)
    with tempfile.TemporaryDirectory(prefix="dnslab-bench-") as tmp:
        os.environ["DNSLAB_STATE"] = tmp
        key = ensure_key()
        for round_ in range(1, args.rounds + 1):
            with ThreadPoolExecutor(2) as pool:
                direct = pool.submit(_boot, lab, image, Path(tmp), f"direct{round_}", False, accel, key)
                grub = pool.submit(_boot, lab, image, Path(tmp), f"grub{round_}", True, accel, key)
                t_direct, t_grub = direct.result(), grub.result()
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"round {round_} ({accel}, load {load}): direct-kernel {t_direct:.1f} s, "
                  f"GRUB {t_grub:.1f} s, direct/GRUB = {t_direct / t_grub:.2f}")


if __name__ == "__main__":
    main()
