#!/usr/bin/env bash
# Host setup for dnslab, called by `make setup`: install the missing Debian packages, then dnslab's
# Python packages into a venv. Every failure is one line `dnslab: error: ...` on stderr, exit 2.
#
# Usage: lab/host_setup.sh [--venv DIR] [--retry COMMAND] PACKAGE...
#   --venv   the venv to create or update (default .venv, relative to the repo)
#   --retry  the command the operator ran, named in each fix (default: make setup)
set -euo pipefail

venv=.venv
retry="make setup"
while [[ $# -gt 0 ]]; do
    case $1 in
        --venv) venv=$2; shift 2 ;;
        --retry) retry=$2; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
packages=("$@")
((${#packages[@]} > 0)) || { echo "usage: $0 [--venv DIR] [--retry COMMAND] PACKAGE..." >&2; exit 2; }

die() {
    echo "dnslab: error: $*" >&2
    exit 2
}

# "a", "a and b", "a, b and c", "a, b, c and 4 more packages" (the first three names, then a count).
name_list() {
    local n=$# shown
    if ((n == 1)); then echo "$1"; return; fi
    if ((n <= 3)); then
        shown=$(printf '%s, ' "${@:1:n-1}")
        echo "${shown%, } and ${!n}"
        return
    fi
    shown=$(printf '%s, ' "${@:1:3}")
    echo "${shown%, } and $((n - 3)) more packages"
}

# "<names> is/are missing" with qemu-system-x86 first, since the lab VM cannot run without it.
missing_phrase() {
    local ordered=() p
    for p in "$@"; do [[ $p == qemu-system-x86 ]] && ordered=("$p" "${ordered[@]}") || ordered+=("$p"); done
    if (($# == 1)); then echo "$1 is missing"; else echo "$(name_list "${ordered[@]}") are missing"; fi
}

# "it" for one package, "them" for more.
them() { if (($1 == 1)); then echo it; else echo them; fi; }

# Why qemu matters, when it is among the given packages.
qemu_note() {
    local p
    for p in "$@"; do
        [[ $p == qemu-system-x86 ]] && { echo " (without qemu-system-x86 the lab VM cannot run)"; return; }
    done
    return 0
}

# " (<last error line of a command's log>)", or nothing when there is none short enough to quote.
cause() {
    local line
    line=$(grep -E '^[[:space:]]*(ERROR|E):' "$1" | tail -n 1 || true)
    [[ -z $line ]] && line=$(grep -v '^[[:space:]]*$' "$1" | tail -n 1 || true)
    line=$(sed -E 's/^[[:space:]]+//' <<<"$line")
    if [[ -n $line ]] && ((${#line} <= 160)); then echo " ($line)"; fi
    return 0
}

fix_mirror="add a Debian 12 (bookworm) mirror to /etc/apt/sources.list(.d), run apt-get update, then $retry again"

# 1. Debian with dpkg and apt, and root to install into it.
command -v dpkg-query >/dev/null && command -v apt-get >/dev/null ||
    die "no apt-get or dpkg-query here; dnslab's host setup needs Debian 12 (bookworm)"
[[ $(id -u) == 0 ]] ||
    die "setup installs Debian packages (qemu, unbound, ...) and needs root; run: sudo $retry"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# 2. Which packages are missing: dpkg's status flag "?i" means installed.
installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${packages[@]}" 2>/dev/null |
    awk 'substr($1, 2, 1) == "i" { print $2 }' || true)
missing=()
for p in "${packages[@]}"; do
    grep -qxF "$p" <<<"$installed" || missing+=("$p")
done

# 3. Install only what is missing; a complete host never touches apt.
if ((${#missing[@]} == 0)); then
    echo "==> host packages: all ${#packages[@]} present"
else
    echo "==> installing ${#missing[@]} missing host packages: ${missing[*]}"
    echo "==> apt-get update"
    apt-get update -q >"$log" 2>&1 || die "$(missing_phrase "${missing[@]}") and apt-get update" \
        "failed$(cause "$log")$(qemu_note "${missing[@]}"); $fix_mirror"
    # A package is offered when apt-cache policy names a candidate other than (none).
    offered=$(apt-cache policy "${missing[@]}" 2>/dev/null | awk '
        /^[^ ].*:$/ { name = substr($0, 1, length($0) - 1) }
        $1 == "Candidate:" && $2 != "(none)" { print name }' || true)
    unoffered=()
    for p in "${missing[@]}"; do
        grep -qxF "$p" <<<"$offered" || unoffered+=("$p")
    done
    ((${#unoffered[@]} == 0)) || die "$(missing_phrase "${unoffered[@]}") and no package source offers" \
        "$(them ${#unoffered[@]})$(qemu_note "${unoffered[@]}"); $fix_mirror"
    # Keep package scripts from starting services: the host's unbound must never run as a recursor.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f "$log" /usr/sbin/policy-rc.d' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1 ||
        die "apt-get could not install $(name_list "${missing[@]}")$(cause "$log")$(qemu_note "${missing[@]}");" \
            "check that /etc/apt/sources.list(.d) reaches a Debian 12 (bookworm) mirror, then $retry again"
    # The stock unbound is a recursor and keepalived would manage the host's IPVS: when this setup
    # installed them, stop them and keep them from starting at boot. Services that were already there
    # are the host's own (a host may use Unbound as its resolver) and are left alone.
    ours=()
    for p in "${missing[@]}"; do
        case $p in unbound | keepalived) ours+=("$p") ;; esac
    done
    if ((${#ours[@]} > 0)) && command -v systemctl >/dev/null; then
        if [[ -d /run/systemd/system ]]; then now=(--now); else now=(); fi
        systemctl disable "${now[@]}" "${ours[@]}" >/dev/null 2>&1 || true
    fi
fi

# 4. dnslab's Python packages, from PyPI or wherever PIP_INDEX_URL / PIP_FIND_LINKS point.
echo "==> installing Python packages into $venv"
fix_pip="set PIP_INDEX_URL or PIP_FIND_LINKS to a reachable index or wheel directory and run $retry again"
[[ -x $venv/bin/python ]] || python3 -m venv "$venv" >"$log" 2>&1 ||
    die "python3 -m venv $venv failed$(cause "$log"); remove $venv and run $retry again"
"$venv/bin/python" -m pip install -q -e '.[dev,ctk]' >"$log" 2>&1 ||
    die "pip could not install dnslab's Python packages (PyPI unreachable?); $fix_pip$(cause "$log")"
