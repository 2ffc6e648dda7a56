"""The libvirt box: its tar layout, its metadata, the cache by image hash, and `vagrant box add`."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import box
from lab.errors import LabError

GIB = 1024**3


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


def test_metadata_rounds_the_virtual_size_up_to_whole_gib():
    assert box.metadata(3 * GIB) == {"provider": "libvirt", "format": "qcow2", "virtual_size": 3}
    assert box.metadata(3 * GIB + 1)["virtual_size"] == 4
    assert box.metadata(1)["virtual_size"] == 1


def test_box_is_a_tar_of_metadata_vagrantfile_and_the_image(tmp_path: Path):
    image = qcow2(tmp_path / "disk.qcow2", "5G")
    out = box.write_box(image, "h1", tmp_path / "x.box")
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == ["Vagrantfile", "box.img", "dnslab-image-hash", "metadata.json"]
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
def test_package_is_cached_by_image_hash_and_added_to_vagrant_once(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path / "vagrant.d"))
    image = qcow2(tmp_path / "disk.qcow2", "2G")

    path = box.package(Artifacts("hash-a", image))
    assert path == tmp_path / box.BOX_FILE
    assert box.added_hash() == "hash-a"
    added = box.added_dir() / "box.img"
    assert json.loads((box.added_dir() / "metadata.json").read_text())["virtual_size"] == 2
    stamps = (path.stat().st_mtime_ns, added.stat().st_mtime_ns)

    assert box.package(Artifacts("hash-a", image)) == path  # same image: nothing rewritten or re-added
    assert (path.stat().st_mtime_ns, added.stat().st_mtime_ns) == stamps

    box.package(Artifacts("hash-b", image))  # new image: new box, re-added under the same name
    assert box.added_hash() == "hash-b"
    assert added.stat().st_mtime_ns != stamps[1]
