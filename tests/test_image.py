"""The pure parts of the image build: package list, cache keys, command lines, staging, tool checks."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.image import build as image
from lab.image import recipe as image_recipe
from lab.image.steps import run_step
from lab.model.config import RELEASES
from lab.model.errors import LabError
from lab.model.parse import load_lab

DATA = Path(__file__).parent / "data"


def test_parse_packages_skips_comments_and_blanks():
    text = "# heading\nunbound\n\n  keepalived  # the checker\n#grub-pc\nipvsadm\n"
    assert image_recipe.parse_packages(text) == ("unbound", "keepalived", "ipvsadm")


def test_a_package_can_be_for_some_releases_only():
    text = "docker.io\ndocker-cli [trixie]  # its own package there\nfoo [bookworm, trixie]\n"
    assert image_recipe.parse_packages(text, "bookworm") == ("docker.io", "foo")
    assert image_recipe.parse_packages(text, "trixie") == ("docker.io", "docker-cli", "foo")
    assert image_recipe.parse_packages(text) == ("docker.io", "docker-cli", "foo")


def test_package_list_has_the_stack_and_no_duplicates():
    packages = image_recipe.parse_packages((image_recipe.BASE_DIR / "packages.txt").read_text())
    assert len(packages) == len(set(packages))
    for needed in ("linux-image-amd64", "openssh-server", "unbound", "keepalived", "ipvsadm", "iptables",
                   "conntrack", "dnsperf", "dnsutils", "python3-venv", "grub-pc"):
        assert needed in packages


def test_mmdebstrap_argv_names_no_mirror():
    argv = image_recipe.mmdebstrap_argv("trixie", ["unbound", "keepalived"], Path("/h/customize.sh"),
                                        Path("/t/rootfs"))
    assert argv[-2:] == ["trixie", "/t/rootfs"]
    assert "--include=unbound,keepalived" in argv
    assert "--variant=minbase" in argv and "--customize-hook=/h/customize.sh" in argv
    assert not any("://" in arg or "debian.org" in arg for arg in argv)


def test_packer_argv_passes_every_variable_and_only_the_qemu_source():
    argv = image_recipe.packer_argv({"base_image": "/c/base.qcow2", "cpus": 2})
    assert argv[:3] == ["packer", "build", "-only=qemu.dnslab"]
    assert argv[-1] == str(image_recipe.TEMPLATE)
    assert argv[4:6] == ["-var", "base_image=/c/base.qcow2"] and argv[6:8] == ["-var", "cpus=2"]


def test_hash_inputs_changes_with_content_path_and_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(image_recipe, "REPO_ROOT", tmp_path)
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one")
    b.write_text("two")
    key = image_recipe.hash_inputs([a, b], {"pip": "locust==1"})
    assert key == image_recipe.hash_inputs([b, a], {"pip": "locust==1"}), "order of files must not matter"
    assert key != image_recipe.hash_inputs([a, b], {"pip": "locust==2"})
    a.write_text("one!")
    assert key != image_recipe.hash_inputs([a, b], {"pip": "locust==1"})
    a.write_text("one")
    a.rename(tmp_path / "c.txt")
    assert key != image_recipe.hash_inputs([tmp_path / "c.txt", b], {"pip": "locust==1"})


def test_image_key_depends_on_base_key_and_is_stable():
    assert image_recipe.image_key("a" * 64) == image_recipe.image_key("a" * 64)
    assert image_recipe.image_key("a" * 64) != image_recipe.image_key("b" * 64)
    assert image_recipe.base_key("bookworm") == image_recipe.base_key("bookworm")


def test_each_release_has_its_own_cache_entry():
    keys = {release: image_recipe.base_key(release) for release in RELEASES}
    assert len(set(keys.values())) == len(RELEASES)
    assert len({image_recipe.image_key(k) for k in keys.values()}) == len(RELEASES)


@pytest.mark.parametrize(("log", "missing"), [
    ("mmdebstrap-no-suite.log", "the suite 'trixie' (no Release file for it at the package source)"),
    ("mmdebstrap-no-package.log", "the package nosuchpkg-dnslab (not in trixie)"),
])
def test_what_the_package_source_lacks_is_read_from_mmdebstraps_output(log, missing):
    assert image_recipe.missing_from_log((DATA / log).read_text(), "trixie") == missing


def test_other_mmdebstrap_failures_are_not_blamed_on_the_package_source():
    text = "I: running apt-get update...\nE: customize hook failed: exit 1\nE: mmdebstrap failed to run\n"
    assert image_recipe.missing_from_log(text, "trixie") is None


def test_a_release_the_package_source_lacks_is_one_line_naming_it(tmp_path, monkeypatch):
    """Stage 1 failing on a missing suite: a LabError naming the release and what is missing."""
    log = tmp_path / "base.log"
    log.write_text("earlier build\n")
    fake = tmp_path / "mmdebstrap"
    fake.write_text(f"#!/bin/sh\ncat {DATA / 'mmdebstrap-no-suite.log'}\nexit 25\n")
    fake.chmod(0o755)
    monkeypatch.setattr(image, "mmdebstrap_argv", lambda release, *a: [str(fake), release])
    with pytest.raises(LabError) as err:
        image._rootfs("forky", tmp_path / "rootfs", log, {})
    text = str(err.value)
    assert text.startswith("image build: release forky: the package source lacks the suite 'forky'")
    assert "\n" not in text and str(log) in text



def test_the_container_image_is_a_tarball_of_debian_packages_without_docs():
    argv = image_recipe.container_argv("bookworm", ["unbound", "keepalived"], Path("/t/stack.tar"))
    assert argv[:3] == ["mmdebstrap", "--variant=minbase", "--include=unbound,keepalived"]
    assert argv[-2:] == ["bookworm", "/t/stack.tar"]  # no mirror: Debian's default
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in argv
    assert image_recipe.parse_packages(image_recipe.CONTAINER_PACKAGES.read_text())[:2] == (
        "unbound", "keepalived")


def test_a_step_alongside_runs_with_the_body_and_fails_in_one_line(tmp_path):
    from lab.image.steps import alongside

    log, mark = tmp_path / "bg.log", tmp_path / "mark"
    with alongside("bg", ["sh", "-c", f"sleep 0.3; touch {mark}"], log):
        assert not mark.exists()  # the body runs while it does
    assert mark.exists()
    failed = pytest.raises(LabError, match=r"image build: bg failed \(exit 3\).*full log: .*bg\.log")
    with failed, alongside("bg", ["sh", "-c", "echo broken; exit 3"], log):
        pass
    slow = tmp_path / "slow"
    with pytest.raises(RuntimeError), alongside("bg", ["sh", "-c", f"sleep 30; touch {slow}"], log):
        raise RuntimeError("the body failed")  # the background step is ended, not waited for
    assert not slow.exists()


def test_staging_renames_on_success_and_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "images" / "k1"
    with image._staging(final) as tmp:
        (tmp / "dnslab.qcow2").write_text("disk")
    assert (final / "dnslab.qcow2").read_text() == "disk"

    broken = tmp_path / "images" / "k2"
    with pytest.raises(RuntimeError), image._staging(broken) as tmp:
        (tmp / "dnslab.qcow2").write_text("half")
        raise RuntimeError("stage failed")
    assert not broken.exists()
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["k1"], "no temp dir left behind"


def test_missing_tool_names_its_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LabError, match=r"mmdebstrap; install it: apt-get install mmdebstrap"):
        image.check_tools()
    (tmp_path / "mmdebstrap").symlink_to(shutil.which("true", path="/usr/bin:/bin"))
    with pytest.raises(LabError, match=r"sfdisk; install it: apt-get install fdisk"):
        image.check_tools()


def test_describe_lists_every_artifact(tmp_path):
    disk = tmp_path / "dnslab.qcow2"
    disk.write_bytes(b"\0" * 2**20)
    art = image.ImageArtifacts("f" * 64, disk, tmp_path / "vmlinuz", tmp_path / "initrd.img")
    text = art.describe()
    assert "ffffffffffffffff" in text and str(disk) in text and "(1 MiB)" in text and "box" not in text


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (the image build runs as root)")
def test_remove_tree_unmounts_before_deleting(tmp_path):
    build = tmp_path / "build"
    inner = build / "rootfs" / "dev"
    inner.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(inner)], check=True)
    (inner / "node").write_text("must not be deleted through a mount")
    assert image._mounts_under(build) == [inner]
    image.remove_tree(build)
    assert not build.exists() and image._mounts_under(tmp_path) == []


def test_a_failing_step_names_its_log_and_last_lines(tmp_path):
    log = tmp_path / "build.log"
    script = "echo preparing; echo 'E: no space left' >&2; exit 3"
    with pytest.raises(LabError) as err:
        run_step("stage 9/9: broken", ["sh", "-c", script], log)
    message = str(err.value)
    assert err.value.exit_code == 1
    assert "stage 9/9: broken failed (exit 3)" in message and f"full log: {log}" in message
    tail = f"last lines: === stage 9/9: broken: sh -c {script} | preparing | E: no space left"
    assert message.endswith(tail)
    assert "\n" not in message


def test_a_step_that_works_returns_its_time_and_keeps_its_output(tmp_path):
    log = tmp_path / "build.log"
    assert run_step("stage 1/1: fine", ["sh", "-c", "echo hello"], log) >= 0
    assert log.read_text().splitlines()[-1] == "hello"


@pytest.fixture
def killed_build(tmp_path):
    """The leftovers of a killed build in cache/images/: a staging directory holding a bind mount of a
    stand-in for the host's /dev (a tmpfs outside it), a proc mount and a loop device on its raw disk."""
    if os.geteuid() != 0:
        pytest.skip("mounts and loop devices need root (the image build runs as root)")
    host_dev = tmp_path / "host-dev"
    host_dev.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(host_dev)], check=True)
    (host_dev / "null").write_text("a device node of the host: must survive")
    stale = tmp_path / "cache" / "images" / ".48abc737fbb1-x1y2z3_q"
    mnt = stale / "mnt"
    for sub in ("dev", "proc"):
        (mnt / sub).mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(host_dev), str(mnt / "dev")], check=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(mnt / "proc")], check=True)
    raw = stale / "base.raw"
    raw.write_bytes(b"\0" * 2**20)
    loop = subprocess.run(["losetup", "--show", "-f", str(raw)], capture_output=True, text=True)
    loop_dev = loop.stdout.strip() if loop.returncode == 0 else None
    try:
        yield stale, host_dev, loop_dev
    finally:
        for point in image._mounts_under(tmp_path):
            subprocess.run(["umount", "--lazy", str(point)], check=False)
        if loop_dev:
            subprocess.run(["losetup", "-d", loop_dev], check=False, stderr=subprocess.DEVNULL)


def test_the_next_build_clears_what_a_killed_build_left(killed_build, tmp_path, monkeypatch):
    stale, host_dev, loop_dev = killed_build
    images = stale.parent
    (images / "0123abc").mkdir()  # a finished image: not a staging directory, kept
    busy = images / ".0123456789ab-busy0000"
    busy.mkdir()
    user = subprocess.Popen(["sleep", "60"], cwd=busy)  # a build that still runs there: kept
    monkeypatch.setenv("DNSLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(image, "check_tools", lambda: None)
    built = image.ImageArtifacts("k", tmp_path / "d.qcow2", tmp_path / "k", tmp_path / "i")
    monkeypatch.setattr(image, "_build_base", lambda key, release: built)
    monkeypatch.setattr(image, "_build_layer", lambda key, base, lab: built)
    try:
        assert image.build(load_lab(), force=True) is built
    finally:
        user.kill()
        user.wait()
    assert not stale.exists()
    assert sorted(p.name for p in images.iterdir()) == [".0123456789ab-busy0000", "0123abc"]
    assert (host_dev / "null").read_text() == "a device node of the host: must survive"
    assert image._mounts_under(host_dev) == [host_dev]  # the host's own mount is untouched
    if loop_dev:
        listed = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME"],
                                capture_output=True, text=True).stdout.split()
        assert loop_dev not in listed
