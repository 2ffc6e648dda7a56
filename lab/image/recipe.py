"""What the lab image is made of: the recipe that decides its bytes, and the cache keys over it.

Pure apart from reading the input files. Changing anything here, in packer/base/ or in the packer
template and scripts changes a key and so rebuilds the image; lab/image/build.py (how the build runs and
shows progress) is not part of the keys.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from lab.model.config import REPO_ROOT

PACKER_DIR = REPO_ROOT / "packer"
BASE_DIR = PACKER_DIR / "base"
CONTAINER_PACKAGES = BASE_DIR / "container-packages.txt"
TEMPLATE = PACKER_DIR / "dnslab.pkr.hcl"
DISK_MIB = 4096
PIP_PACKAGES = ("locust==2.47.0", "dnspython==2.9.2")
KERNEL_CMDLINE = "root=LABEL=dnslab-root ro console=ttyS0,115200 net.ifnames=0 biosdevname=0"

def parse_packages(text: str, release: str | None = None) -> tuple[str, ...]:
    """Package names from packages.txt: one per line, `#` starts a comment; `name [trixie]` is only for
    the releases in brackets (all of them when `release` is None)."""
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(None, 1)
        if not words:
            continue
        releases = words[1].strip().strip("[]").replace(",", " ").split() if len(words) > 1 else []
        if release is None or not releases or release in releases:
            out.append(words[0])
    return tuple(out)


def hash_inputs(files: Iterable[Path], extra: Mapping[str, str] | None = None) -> str:
    """sha256 over each file's path (relative to the repo) and content, and the extra key/values."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"file {path.relative_to(REPO_ROOT)}\0".encode())
        digest.update(path.read_bytes())
    extra = extra or {}
    for key in sorted(extra):
        digest.update(f"\0{key}={extra[key]}\0".encode())
    return digest.hexdigest()


def _tree(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


def base_key(release: str) -> str:
    """The key of the base image: the Debian release, packer/base/*, the pip pins and this recipe."""
    extra = {"suite": release, "disk_mib": str(DISK_MIB), "pip": " ".join(PIP_PACKAGES)}
    return hash_inputs([*_tree(BASE_DIR), Path(__file__)], extra)


def image_key(base: str) -> str:
    """The key of the lab image: the base key plus the packer template and its scripts."""
    return hash_inputs([TEMPLATE, *_tree(PACKER_DIR / "scripts")], {"base": base})


def mmdebstrap_argv(release: str, packages: Iterable[str], hook: Path, target: Path) -> list[str]:
    """mmdebstrap for the base rootfs. No mirror argument: Debian's default, plus updates/security."""
    return ["mmdebstrap", "--variant=minbase", f"--include={','.join(packages)}",
            f"--customize-hook={hook}", release, str(target)]


def container_argv(release: str, packages: Iterable[str], target: Path) -> list[str]:
    """mmdebstrap of the compose runtime's container image: a tarball of Debian packages (no docs,
    manuals or locales; no resolv.conf or hostname, which Docker provides)."""
    excludes = [f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "locale")]
    return ["mmdebstrap", "--variant=minbase", f"--include={','.join(packages)}", *excludes,
            '--customize-hook=rm -f "$1"/etc/resolv.conf "$1"/etc/hostname', release, str(target)]


# What apt (inside mmdebstrap) says when the package source lacks a suite or a package.
_NO_SUITE_RE = re.compile(r"does not have a Release file")
_NO_PACKAGE_RE = re.compile(r"(?:Unable to locate package |Package ')([A-Za-z0-9.+-]+)'?"
                            r"(?: has no installation candidate)?")


def missing_from_log(text: str, release: str) -> str | None:
    """What the package source lacks, from a failed mmdebstrap's output: the suite, or the packages
    apt could not find; None when the failure was something else."""
    if _NO_SUITE_RE.search(text):
        return f"the suite {release!r} (no Release file for it at the package source)"
    names = sorted({m.group(1) for line in text.splitlines()
                    if "Unable to locate package" in line or "has no installation candidate" in line
                    for m in [_NO_PACKAGE_RE.search(line)] if m})
    if names:
        return f"the package{'s' if len(names) > 1 else ''} {', '.join(names)} (not in {release})"
    return None


def packer_argv(variables: Mapping[str, str | int]) -> list[str]:
    """`packer build` of the qemu source with every variable given explicitly."""
    argv = ["packer", "build", "-only=qemu.dnslab", "-color=false"]
    for key, value in variables.items():
        argv += ["-var", f"{key}={value}"]
    return [*argv, str(TEMPLATE)]
