"""The libvirt Vagrant box made from the lab image, and its registration with Vagrant.

A box is a tar of `metadata.json`, a `Vagrantfile` and `box.img`. Its disk is a copy of the lab
image with the one thing only a Vagrant box may have: the `vagrant` user with Vagrant's public
insecure key and passwordless sudo (packer/box/vagrant-disk.sh); the qcow2 the qemu provider boots
has no such user. The box is written atomically beside the image and cached by a key over the
image's hash, that script and the insecure key; the box carries the key (in `dnslab-box-key`) so
that `vagrant box add` runs only when Vagrant holds another box.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from lab.image.build import ImageArtifacts
from lab.image.steps import require_tools, run_step
from lab.local.state import cache_dir
from lab.model.config import REPO_ROOT
from lab.model.errors import ActionFailed, ConfigError

BOX_NAME = "dnslab/bookworm"
BOX_FILE = "dnslab-libvirt.box"
HASH_FILE = "dnslab-box-key"
GIB = 1024**3
DISK_SCRIPT = REPO_ROOT / "packer" / "box" / "vagrant-disk.sh"
VAGRANT_KEY_GLOB = "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub"
# Host tools the box disk needs, and the Debian package of each.
DISK_TOOLS = {"qemu-storage-daemon": "qemu-system-x86", "qemu-img": "qemu-utils", "sfdisk": "fdisk",
              "losetup": "mount", "useradd": "passwd"}

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
    """What `package` needs of lab.image.build's ImageArtifacts."""

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
        raise ActionFailed(f"{path}: not a readable disk image ({result.stderr.strip()}); "
                           "rebuild with `fab image --force`")
    info = json.loads(result.stdout)
    if info.get("format") != "qcow2" or info.get("backing-filename"):
        raise ActionFailed(f"{path}: a box needs a standalone qcow2 (format {info.get('format')}, "
                           f"backing {info.get('backing-filename')}); rebuild with `fab image --force`")
    return info


def vagrant_public_key() -> bytes:
    """Vagrant's well-known insecure public key, from the host's vagrant package."""
    found = sorted(Path("/").glob(VAGRANT_KEY_GLOB.lstrip("/")))
    if not found:
        raise ConfigError("the Vagrant box needs Vagrant's insecure public key (for its vagrant user); "
                          "install it: apt-get install vagrant")
    return found[-1].read_bytes()


def box_key(image_hash: str, vagrant_pub: bytes) -> str:
    """The box's cache key: the image's hash, the disk script and the insecure key."""
    digest = hashlib.sha256(f"image {image_hash}\0".encode())
    digest.update(DISK_SCRIPT.read_bytes())
    digest.update(b"\0" + vagrant_pub)
    return digest.hexdigest()


def make_disk(image: Path, dest: Path, vagrant_pub: bytes, log: Path) -> Path:
    """The box's disk at `dest`: the image plus the vagrant user (packer/box/vagrant-disk.sh)."""
    require_tools(DISK_TOOLS, "the Vagrant box")
    if os.geteuid() != 0:
        raise ConfigError("the Vagrant box needs root (it mounts a copy of the image); run it as root")
    pub = dest.with_name(f".{dest.name}.{os.getpid()}.pub")
    pub.write_bytes(vagrant_pub)
    try:
        run_step("box: disk with the vagrant user", ["sh", str(DISK_SCRIPT), str(image), str(dest), str(pub)],
                 log)
    finally:
        pub.unlink(missing_ok=True)
    return dest


def write_box(qcow2: Path, key: str, dest: Path) -> Path:
    """Write the box tar (disk `qcow2`, cache key `key`) to `dest` atomically (a partial file is never
    seen under that name)."""
    meta = metadata(int(qcow2_info(qcow2)["virtual-size"]))
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w") as tar:
            for name, text in (("metadata.json", json.dumps(meta) + "\n"), ("Vagrantfile", BOX_VAGRANTFILE),
                               (HASH_FILE, key + "\n")):
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
    """The key of the box Vagrant holds under `name`, if any."""
    try:
        return (added_dir(name) / HASH_FILE).read_text().strip()
    except OSError:
        return None


def vagrant_env() -> dict[str, str]:
    """The environment for every vagrant command: no checkpoint (no phoning home)."""
    return {**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1"}


def add_box(box: Path, key: str, name: str = BOX_NAME) -> None:
    """`vagrant box add --force` the box under `name`, unless Vagrant already holds this one (its key).

    It runs in a fresh, empty network namespace (`unshare --net`): adding a local file needs none.
    """
    if added_hash(name) == key:
        return
    if shutil.which("vagrant") is None:
        raise ConfigError("`vagrant` not found: "
                          "apt-get install vagrant vagrant-libvirt libvirt-daemon-system")
    argv = ["unshare", "--net", "vagrant", "box", "add", "--force", "--name", name, "--provider", "libvirt",
            str(box)]
    result = subprocess.run(argv, capture_output=True, text=True, env=vagrant_env())
    if result.returncode != 0 or added_hash(name) != key:
        tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-2:])
        raise ActionFailed(f"`vagrant box add {box}` failed: {tail}")


def package(artifacts: Image) -> Path:
    """The lab image as a libvirt box beside it (cached by box_key), added to Vagrant as BOX_NAME."""
    vagrant_pub = vagrant_public_key()
    key = box_key(artifacts.hash, vagrant_pub)
    dest = Path(artifacts.qcow2).parent / BOX_FILE
    if not dest.exists() or _box_hash(dest) != key:
        disk = dest.with_name(f".box-{os.getpid()}.qcow2")
        try:
            make_disk(Path(artifacts.qcow2), disk, vagrant_pub, _log(key))
            write_box(disk, key, dest)
        finally:
            disk.unlink(missing_ok=True)
    add_box(dest, key)
    return dest


def with_box(image: ImageArtifacts) -> ImageArtifacts:
    """`image` with its box made (or reused) and added to Vagrant."""
    return replace(image, box=package(image))


def _log(key: str) -> Path:
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"box-{key[:16]}.log"
    log.write_text(f"dnslab box build {key} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    return log


def _box_hash(box: Path) -> str | None:
    try:
        with tarfile.open(box) as tar:
            member = tar.extractfile(HASH_FILE)
            return member.read().decode().strip() if member else None
    except (OSError, KeyError, tarfile.TarError):
        return None
