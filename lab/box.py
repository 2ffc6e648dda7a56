"""The libvirt Vagrant box made from the lab image, and its registration with Vagrant.

A box is a tar of `metadata.json`, a `Vagrantfile` and `box.img` (the qcow2). It is written
atomically beside the image and cached by the image's hash, which the box also carries (in
`dnslab-image-hash`) so that `vagrant box add` runs only when Vagrant holds another image.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Protocol

from lab.errors import LabError

BOX_NAME = "dnslab/bookworm"
BOX_FILE = "dnslab-libvirt.box"
HASH_FILE = "dnslab-image-hash"
GIB = 1024**3

BOX_VAGRANTFILE = """\
# dnslab lab image (Debian 12). Defaults for vagrant-libvirt; the repo's Vagrantfile sets the rest.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
    libvirt.nic_model_type = "virtio"
  end
end
"""


class Image(Protocol):
    """What `package` needs of lab.image's ImageArtifacts."""

    hash: str
    qcow2: Path


def metadata(virtual_size_bytes: int) -> dict[str, Any]:
    """The box's metadata.json: vagrant-libvirt wants the disk's virtual size in whole GiB."""
    size_gib = max(1, math.ceil(virtual_size_bytes / GIB))
    return {"provider": "libvirt", "format": "qcow2", "virtual_size": size_gib}


def qcow2_info(path: Path) -> dict[str, Any]:
    """`qemu-img info` of a standalone qcow2, or a LabError saying what is wrong with it."""
    result = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"{path}: not a readable disk image ({result.stderr.strip()}); "
                       "rebuild with `fab image --force`")
    info = json.loads(result.stdout)
    if info.get("format") != "qcow2" or info.get("backing-filename"):
        raise LabError(f"{path}: a box needs a standalone qcow2 (format {info.get('format')}, "
                       f"backing {info.get('backing-filename')}); rebuild with `fab image --force`")
    return info


def write_box(qcow2: Path, image_hash: str, dest: Path) -> Path:
    """Write the box tar to `dest` atomically (a partial file is never seen under that name)."""
    meta = metadata(int(qcow2_info(qcow2)["virtual-size"]))
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w") as tar:
            for name, text in (("metadata.json", json.dumps(meta) + "\n"), ("Vagrantfile", BOX_VAGRANTFILE),
                               (HASH_FILE, image_hash + "\n")):
                data = text.encode()
                member = tarfile.TarInfo(name)
                member.size, member.mode = len(data), 0o644
                tar.addfile(member, io.BytesIO(data))
            tar.add(str(qcow2), arcname="box.img")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def vagrant_home() -> Path:
    """Where Vagrant keeps its boxes: $VAGRANT_HOME, else ~/.vagrant.d."""
    return Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")


def added_dir(name: str = BOX_NAME) -> Path:
    """The directory `vagrant box add` unpacks the box into (version 0, provider libvirt)."""
    return vagrant_home() / "boxes" / name.replace("/", "-VAGRANTSLASH-") / "0" / "libvirt"


def added_hash(name: str = BOX_NAME) -> str | None:
    """The image hash of the box Vagrant holds under `name`, if any."""
    try:
        return (added_dir(name) / HASH_FILE).read_text().strip()
    except OSError:
        return None


def vagrant_env() -> dict[str, str]:
    """The environment for every vagrant command: no checkpoint (no phoning home)."""
    return {**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1"}


def add_box(box: Path, image_hash: str, name: str = BOX_NAME) -> None:
    """`vagrant box add --force` the box under `name`, unless Vagrant already holds this image.

    It runs in a fresh, empty network namespace (`unshare --net`): adding a local file needs none.
    """
    if added_hash(name) == image_hash:
        return
    if shutil.which("vagrant") is None:
        raise LabError("`vagrant` not found: apt-get install vagrant vagrant-libvirt libvirt-daemon-system")
    argv = ["unshare", "--net", "vagrant", "box", "add", "--force", "--name", name, "--provider", "libvirt",
            str(box)]
    result = subprocess.run(argv, capture_output=True, text=True, env=vagrant_env())
    if result.returncode != 0 or added_hash(name) != image_hash:
        tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-2:])
        raise LabError(f"`vagrant box add {box}` failed: {tail}")


def package(artifacts: Image) -> Path:
    """The lab image as a libvirt box beside it (cached by image hash), added to Vagrant as BOX_NAME."""
    dest = Path(artifacts.qcow2).parent / BOX_FILE
    if not dest.exists() or _box_hash(dest) != artifacts.hash:
        write_box(Path(artifacts.qcow2), artifacts.hash, dest)
    add_box(dest, artifacts.hash)
    return dest


def _box_hash(box: Path) -> str | None:
    try:
        with tarfile.open(box) as tar:
            member = tar.extractfile(HASH_FILE)
            return member.read().decode().strip() if member else None
    except (OSError, KeyError, tarfile.TarError):
        return None
