"""The accelerator the lab image runs under: KVM when it can run the image's kernel, else TCG.

The image build (packer's qemu) and the qemu provider both boot the image, so both ask here. Auto
probes KVM once per kernel and qemu version, and caches the verdict in cache_dir()/accel.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from lab.image.steps import console
from lab.local.atomic import write_json
from lab.local.state import cache_dir

QEMU = "qemu-system-x86_64"
KVM_PROBE_TIMEOUT_S = 20.0


def kvm_probe_argv(kernel: Path, serial: Path) -> list[str]:
    """A bare kernel boot under KVM that ends in a panic (no root) and exits: proof KVM runs it."""
    return [QEMU, "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults", "-display", "none",
            "-no-reboot", "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1",
            "-serial", f"file:{serial}"]


def _kvm_runs(kernel: Path) -> bool:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    serial = cache_dir() / "kvm-probe.log"
    serial.unlink(missing_ok=True)
    try:
        subprocess.run(kvm_probe_argv(kernel, serial), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=KVM_PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return False
    return serial.exists() and "Kernel panic" in serial.read_text(errors="replace")


def choose_accel(mode: str, kernel: Path) -> str:
    """"kvm" or "tcg" for `[vm] accel` = auto | kvm | tcg. Auto probes KVM once per kernel and qemu."""
    if mode != "auto":
        return mode
    version = subprocess.run([QEMU, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256(version.encode() + kernel.read_bytes()).hexdigest()[:16]
    verdicts_file = cache_dir() / "accel.json"
    try:
        verdicts = json.loads(verdicts_file.read_text())
    except (OSError, ValueError):
        verdicts = {}  # absent or unreadable: probe again
    verdicts = verdicts if isinstance(verdicts, dict) else {}
    if key not in verdicts:
        with console.status("probing whether KVM can run the lab kernel"):
            verdicts[key] = "kvm" if _kvm_runs(kernel) else "tcg"
        write_json(verdicts_file, verdicts, indent=2)
    return verdicts[key]
