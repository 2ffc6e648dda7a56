"""The libvirt box: its disk (the image plus the vagrant user), its tar layout, its metadata, the cache
by box key, and `vagrant box add`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.model.errors import LabError
from lab.providers.vagrant import box

GIB = 1024**3
PUB = b"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ vagrant insecure public key\n"
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="the box disk mounts a copy of the image (root)")


@dataclass(frozen=True)
class Artifacts:
    hash: str
    qcow2: Path


def qcow2(path: Path, size: str = "3G", backing: Path | None = None) -> Path:
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing:
        argv += ["-b", str(backing), "-F", "qcow2"]
    subprocess.run([*argv, str(path), size], check=True)
    return path


def lab_disk(tmp_path: Path, *, users: str = "", release: bool = True) -> Path:
    """A small disk laid out like the lab image (MBR, ext4 at 1 MiB): a root with the account files,
    /etc/dnslab/image-release unless `release` is False, and the extra passwd lines `users`."""
    root = tmp_path / "rootfs"
    for d in ("etc/dnslab", "etc/sudoers.d", "home", "root"):
        (root / d).mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n" + users)
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:*::\n")
    if release:
        (root / "etc/dnslab/image-release").write_text("test\n")
    raw = tmp_path / "disk.raw"
    subprocess.run(["truncate", "-s", "64M", str(raw)], check=True)
    subprocess.run(["sfdisk", "-q", str(raw)], input=b"label: dos\nstart=2048, type=83\n", check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "offset=1048576", "-d", str(root), str(raw), "63M"],
                   check=True)
    disk = tmp_path / "lab.qcow2"
    subprocess.run(["qemu-img", "convert", "-c", "-O", "qcow2", str(raw), str(disk)], check=True)
    raw.unlink()
    return disk


def read_in_disk(disk: Path, path: str, tmp_path: Path) -> str | None:
    """A file's text in the disk's root partition (debugfs on a raw copy), None when it is absent."""
    raw = tmp_path / "read.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(disk), str(raw)], check=True)
    try:
        out = subprocess.run(["debugfs", "-R", f"cat {path}", f"{raw}?offset=1048576"], capture_output=True,
                             text=True)
    finally:
        raw.unlink()
    return None if "not found" in out.stderr else out.stdout


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@AS_ROOT
def test_the_box_disk_has_the_vagrant_user_and_the_image_keeps_none(tmp_path: Path):
    image = lab_disk(tmp_path)
    before = digest(image)
    disk = box.make_disk(image, tmp_path / "box.qcow2", PUB, tmp_path / "box.log")

    assert "\nvagrant:x:" in read_in_disk(disk, "/etc/passwd", tmp_path)
    assert read_in_disk(disk, "/home/vagrant/.ssh/authorized_keys", tmp_path).encode() == PUB
    assert read_in_disk(disk, "/etc/sudoers.d/vagrant", tmp_path) == "vagrant ALL=(ALL) NOPASSWD: ALL\n"
    assert box.qcow2_info(disk)["format"] == "qcow2"  # standalone: no backing file

    assert digest(image) == before, "the image the qemu provider boots is never written"
    assert "vagrant" not in read_in_disk(image, "/etc/passwd", tmp_path)
    assert read_in_disk(image, "/etc/sudoers.d/vagrant", tmp_path) is None
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no work dir left


@AS_ROOT
@pytest.mark.parametrize(("users", "release", "why"), [
    ("vagrant:x:1000:1000::/home/vagrant:/bin/bash\n", True, "already has a vagrant user"),
    ("", False, "is not a dnslab lab image"),
])
def test_the_box_disk_refuses_an_image_it_must_not_copy(tmp_path: Path, users, release, why):
    image = lab_disk(tmp_path, users=users, release=release)
    log = tmp_path / "box.log"
    with pytest.raises(LabError, match=r"box: disk with the vagrant user failed .*full log") as err:
        box.make_disk(image, tmp_path / "box.qcow2", PUB, log)
    assert "\n" not in str(err.value) and why in log.read_text()
    assert not (tmp_path / "box.qcow2").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text(), "everything unmounted"


def test_box_key_follows_the_image_and_the_insecure_key():
    key = box.box_key("a" * 64, PUB)
    assert key == box.box_key("a" * 64, PUB)
    assert key != box.box_key("b" * 64, PUB) and key != box.box_key("a" * 64, PUB + b"x")


def test_metadata_rounds_the_virtual_size_up_to_whole_gib():
    assert box.metadata(3 * GIB) == {"provider": "libvirt", "format": "qcow2", "virtual_size": 3}
    assert box.metadata(3 * GIB + 1)["virtual_size"] == 4
    assert box.metadata(1)["virtual_size"] == 1


def test_box_is_a_tar_of_metadata_vagrantfile_and_the_image(tmp_path: Path):
    image = qcow2(tmp_path / "disk.qcow2", "5G")
    out = box.write_box(image, "h1", tmp_path / "x.box")
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == ["Vagrantfile", "box.img", "dnslab-box-key", "metadata.json"]
        assert json.load(tar.extractfile("metadata.json"))["virtual_size"] == 5
        assert tar.extractfile("box.img").read() == image.read_bytes()
        assert b"libvirt" in tar.extractfile("Vagrantfile").read()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_an_overlay_or_a_non_image_is_refused_with_the_fix(tmp_path: Path):
    base = qcow2(tmp_path / "base.qcow2")
    overlay = qcow2(tmp_path / "overlay.qcow2", backing=base)
    with pytest.raises(LabError, match="standalone qcow2.*fab image --force"):
        box.write_box(overlay, "h", tmp_path / "x.box")
    junk = tmp_path / "junk.qcow2"
    junk.write_bytes(b"\0" * 4096)
    with pytest.raises(LabError, match="standalone qcow2|not a readable disk image"):
        box.write_box(junk, "h", tmp_path / "x.box")
    assert not (tmp_path / "x.box").exists()


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("vagrant") is None, reason="needs vagrant")
@AS_ROOT
def test_package_is_cached_by_box_key_and_added_to_vagrant_once(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path / "vagrant.d"))
    monkeypatch.setenv("DNSLAB_CACHE", str(tmp_path / "cache"))
    image = lab_disk(tmp_path)
    pub = box.vagrant_public_key()

    path = box.package(Artifacts("hash-a", image))
    assert path == tmp_path / box.BOX_FILE
    assert box.added_hash() == box.box_key("hash-a", pub)
    added = box.added_dir() / "box.img"
    assert json.loads((box.added_dir() / "metadata.json").read_text())["virtual_size"] == 1
    assert read_in_disk(added, "/home/vagrant/.ssh/authorized_keys", tmp_path).encode() == pub
    stamps = (path.stat().st_mtime_ns, added.stat().st_mtime_ns)

    assert box.package(Artifacts("hash-a", image)) == path  # same image: nothing rewritten or re-added
    assert (path.stat().st_mtime_ns, added.stat().st_mtime_ns) == stamps

    box.package(Artifacts("hash-b", image))  # new image: new box, re-added under the same name
    assert box.added_hash() == box.box_key("hash-b", pub)
    assert added.stat().st_mtime_ns != stamps[1]
