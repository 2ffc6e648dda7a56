"""The lab image: an mmdebstrap rootfs, a bootable qcow2, then `packer build` of the lab layer.

Two cache levels under cache_dir(), each keyed by a sha256 of its inputs (lab/image/recipe.py):
  base/<key>/    base.qcow2, vmlinuz, initrd.img     (packer/base/*, the pip pins, the recipe)
  images/<key>/  dnslab.qcow2, vmlinuz, initrd.img   (the base key, packer/dnslab.pkr.hcl, scripts)
Each is built in a temporary directory beside its final place and renamed into place when complete,
so a half-built image is never used. Logs go to cache_dir()/logs/.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.image.accel import choose_accel
from lab.image.recipe import (
    BASE_DIR,
    CONTAINER_PACKAGES,
    DISK_MIB,
    KERNEL_CMDLINE,
    PIP_PACKAGES,
    base_key,
    container_argv,
    image_key,
    missing_from_log,
    mmdebstrap_argv,
    packer_argv,
    parse_packages,
)
from lab.image.steps import alongside, console, require_tools, run_step
from lab.local.state import cache_dir
from lab.model.config import VM, Lab
from lab.model.errors import ActionFailed, ConfigError
from lab.model.layout import CONTAINER_TARBALL

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# Host tools the build runs, and the Debian package that provides each.
TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "sfdisk": "fdisk",
    "partx": "util-linux",
    "losetup": "mount",
    "mkfs.ext4": "e2fsprogs",
    "qemu-img": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86",
    "packer": "packer",
    "ssh-keygen": "openssh-client",
}


@dataclass(frozen=True)
class ImageArtifacts:
    """A built lab image: the disk, and the kernel and initrd for direct-kernel boot."""

    hash: str
    qcow2: Path
    kernel: Path
    initrd: Path
    box: Path | None = None  # the Vagrant box made from it, when the vagrant provider made one

    def describe(self) -> str:
        size = self.qcow2.stat().st_size / 2**20 if self.qcow2.exists() else 0.0
        lines = [f"image   {self.hash[:16]}", f"qcow2   {self.qcow2} ({size:.0f} MiB)",
                 f"kernel  {self.kernel}", f"initrd  {self.initrd}"]
        if self.box:
            lines.append(f"box     {self.box}")
        return "\n".join(lines)


def check_tools() -> None:
    """A LabError naming the Debian package of the first missing build tool, or of missing root."""
    require_tools(TOOLS, "image build")
    if os.geteuid() != 0:
        raise ConfigError("image build needs root (mmdebstrap chroot, loop device for GRUB); run it as root")


def _artifacts(key: str, directory: Path, disk: str) -> ImageArtifacts | None:
    paths = ImageArtifacts(key, directory / disk, directory / "vmlinuz", directory / "initrd.img")
    complete = all(p.is_file() for p in (paths.qcow2, paths.kernel, paths.initrd))
    return paths if complete else None


def cached_image(release: str = VM.release) -> ImageArtifacts | None:
    """The release's image for the current inputs when it is already built, else None (never builds)."""
    key = image_key(base_key(release))
    return _artifacts(key, cache_dir() / "images" / key, "dnslab.qcow2")


@contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise builds across processes (tests and `fab` may build at the same time)."""
    lock = cache_dir() / f".{name}.lock"
    with lock.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, deepest first (from /proc/self/mountinfo)."""
    root = path.resolve()
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(line.split()[4].encode().decode("unicode_escape"))
        if point == root or root in point.parents:
            points.append(point)
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def remove_tree(path: Path) -> None:
    """rm -rf a build directory, unmounting first whatever an interrupted chroot step left mounted in
    it (a bind-mounted /dev must never be deleted through)."""
    for point in _mounts_under(path):
        subprocess.run(["umount", "--lazy", str(point)], check=False, stderr=subprocess.DEVNULL)
    left = _mounts_under(path)
    if left:
        raise ActionFailed(f"image build: {left[0]} is still mounted; unmount it, then remove {path}")
    shutil.rmtree(path, ignore_errors=True)


# `_staging` names its directories `.<first 12 of the key>-<mkdtemp's 8 characters>`.
STAGING_RE = re.compile(r"\.[0-9a-f]{1,12}-[a-z0-9_]{8}")


def _loops_under(path: Path) -> list[str]:
    """Loop devices whose backing file lies under `path` (mkdisk.sh's, left by a killed build)."""
    res = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                         capture_output=True, text=True, check=False)
    root = path.resolve()
    out = []
    for line in res.stdout.splitlines():
        name, _, back = line.strip().partition(" ")
        back_path = Path(back.strip().removesuffix(" (deleted)"))
        if back_path.is_absolute() and (back_path == root or root in back_path.parents):
            out.append(name)
    return out


def _users_of(path: Path) -> list[int]:
    """PIDs whose working directory or an open file lies under `path` (a build still running)."""
    root = str(path.resolve())
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = [proc / "cwd", *(proc / "fd").iterdir()]
            targets = [os.readlink(link) for link in links]
        except OSError:
            continue  # gone, or not ours to read
        if any(t == root or t.startswith(root + "/") for t in targets):
            pids.append(int(proc.name))
    return pids


def clean_stale_staging(parent: Path) -> list[Path]:
    """Remove the staging directories a killed build left in `parent`: first the loop devices and
    mounts under each (only those), then the directory. A directory some process still uses is kept.

    Call it holding the build lock: then no live build owns any of them."""
    removed = []
    for entry in sorted(parent.iterdir()) if parent.is_dir() else []:
        if not entry.is_dir() or entry.is_symlink() or not STAGING_RE.fullmatch(entry.name):
            continue
        users = _users_of(entry)
        if users:
            console.print(f"[yellow]left {entry}: still used by PID {', '.join(map(str, users))}[/]")
            continue
        for loop in _loops_under(entry):
            subprocess.run(["losetup", "-d", loop], check=False, stderr=subprocess.DEVNULL)
        remove_tree(entry)
        removed.append(entry)
    return removed


@contextmanager
def _staging(final: Path) -> Iterator[Path]:
    """A temporary directory beside `final`, renamed to it on success, removed on failure."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name[:12]}-", dir=final.parent))
    tmp.chmod(0o755)  # readable by other users, e.g. libvirt-qemu for a backing file
    try:
        yield tmp
        if final.exists():
            remove_tree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            remove_tree(tmp)


def _log(name: str, key: str) -> Path:
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}-{key[:16]}.log"
    log.write_text(f"dnslab {name} build {key} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    return log


def _rootfs(release: str, rootfs: Path, log: Path, env: dict[str, str]) -> None:
    """Stage 1, with a failure caused by the package source (no such suite or package) told in one
    line naming the release and what is missing."""
    packages = parse_packages((BASE_DIR / "packages.txt").read_text(), release)
    offset = log.stat().st_size
    try:
        run_step(f"stage 1/3: {release} rootfs (mmdebstrap)",
                 mmdebstrap_argv(release, packages, BASE_DIR / "customize.sh", rootfs), log, env=env)
    except ActionFailed:
        with log.open("rb") as fh:
            fh.seek(offset)
            missing = missing_from_log(fh.read().decode(errors="replace"), release)
        if missing is None:
            raise
        raise ActionFailed(f"image build: release {release}: the package source lacks {missing}; "
                           f"log: {log}") from None


def _build_base(key: str, release: str) -> ImageArtifacts:
    final = cache_dir() / "base" / key
    log = _log("base", key)
    with _staging(final) as tmp:
        env = {"DNSLAB_PIP_PACKAGES": " ".join(PIP_PACKAGES)}
        if HOST_CA_BUNDLE.is_file():
            env["DNSLAB_PIP_CERT"] = str(HOST_CA_BUNDLE)
        rootfs, stack = tmp / "rootfs", tmp / "stack.tar"
        packages = parse_packages(CONTAINER_PACKAGES.read_text(), release)
        try:
            # the container image's tarball is made alongside the rootfs (both mostly wait on apt)
            with alongside(f"stage 1/3: {release} container image (mmdebstrap, alongside)",
                           container_argv(release, packages, stack), _log("container", key)):
                _rootfs(release, rootfs, log, env)
            target = rootfs / CONTAINER_TARBALL.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(stack, target)
            run_step("stage 2/3: bootable disk (sfdisk, ext4, GRUB, qcow2)",
                     ["sh", str(BASE_DIR / "mkdisk.sh"), str(rootfs), str(tmp), str(DISK_MIB)], log)
        finally:
            remove_tree(rootfs)
    built = _artifacts(key, final, "base.qcow2")
    if built is None:
        raise ActionFailed(f"image build: stage 2 left no base.qcow2/vmlinuz/initrd.img in {final}; "
                           f"log: {log}")
    return built


def _build_layer(key: str, base: ImageArtifacts, lab: Lab) -> ImageArtifacts:
    final = cache_dir() / "images" / key
    log = _log("image", key)
    with _staging(final) as tmp:
        build_key = tmp / "build_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dnslab-packer",
                        "-f", str(build_key)], check=True, stdin=subprocess.DEVNULL)
        variables = {
            "base_image": base.qcow2, "kernel": base.kernel, "initrd": base.initrd,
            "output_dir": tmp / "packer", "ssh_private_key": build_key,
            "authorized_keys": build_key.with_suffix(".pub"), "serial_log": tmp / "serial.log",
            "image_release": key, "accelerator": choose_accel(lab.vm.accel, base.kernel),
            "disk_size": f"{DISK_MIB}M", "cpus": lab.vm.cpus, "memory": lab.vm.memory_mib,
        }
        env = {"CHECKPOINT_DISABLE": "1", "PACKER_CACHE_DIR": str(tmp / "packer_cache"),
               "TMPDIR": str(tmp)}
        run_step("stage 3/3: lab layer (packer build)",
                 packer_argv({k: str(v) for k, v in variables.items()}), log, env=env, cwd=tmp)
        (tmp / "packer" / "dnslab.qcow2").rename(tmp / "dnslab.qcow2")
        os.link(base.kernel, tmp / "vmlinuz")
        os.link(base.initrd, tmp / "initrd.img")
        manifest = {"hash": key, "base": base.hash, "release": lab.vm.release,
                    "kernel_cmdline": KERNEL_CMDLINE,
                    "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        for leftover in ("packer", "packer_cache", "build_key", "build_key.pub"):
            path = tmp / leftover
            remove_tree(path) if path.is_dir() else path.unlink(missing_ok=True)
    built = _artifacts(key, final, "dnslab.qcow2")
    if built is None:
        raise ActionFailed(f"image build: packer left no dnslab.qcow2 in {final}; log: {log}")
    return built


def build(lab: Lab, force: bool = False) -> ImageArtifacts:
    """The lab image of the lab's release for the current inputs: from the cache, or built (stages 1-3)."""
    base = base_key(lab.vm.release)
    key = image_key(base)
    with _locked("image"):
        image = None if force else _artifacts(key, cache_dir() / "images" / key, "dnslab.qcow2")
        if image is None:
            check_tools()
            for level in ("base", "images"):
                for stale in clean_stale_staging(cache_dir() / level):
                    console.print(f"[dim]removed {stale}, left by an interrupted build[/]")
            start = time.monotonic()
            base_image = None if force else _artifacts(base, cache_dir() / "base" / base, "base.qcow2")
            if base_image is None:
                base_image = _build_base(base, lab.vm.release)
            else:
                console.print(f"[green]✓[/] stages 1-2: base image cached [dim]({base[:16]})[/]")
            image = _build_layer(key, base_image, lab)
            console.print(f"[green]✓[/] image {key[:16]} built in {time.monotonic() - start:.0f} s")
    return image
