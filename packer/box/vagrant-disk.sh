#!/bin/sh
# The Vagrant box's disk: a copy of the lab image plus the `vagrant` user Vagrant first logs in as
# (Vagrant's well-known insecure key, which `vagrant up` replaces with a key of its own, and
# passwordless sudo). Only the box has this user; the qcow2 the qemu provider boots has none.
#   vagrant-disk.sh IMAGE_QCOW2 OUT_QCOW2 VAGRANT_PUBKEY
# The copy keeps the image's compressed clusters. The few files are written through a
# qemu-storage-daemon FUSE export of the copy, a loop device at the root partition's offset and a
# mount, all released on exit. OUT_QCOW2 appears only when complete. Needs root.
set -eu
image="$1" out="$2" pub="$3"
work=$(mktemp -d "$(dirname "$out")/.box-disk-XXXXXX")
copy="$work/disk.qcow2" raw="$work/disk.raw" mnt="$work/root" pidfile="$work/qsd.pid"
loop=""

release() {
    if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt"; fi
    if [ -n "$loop" ]; then losetup -d "$loop" 2>/dev/null || true; loop=""; fi
    if [ -s "$pidfile" ]; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        tries=0
        while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 100 ]; do sleep 0.1; tries=$((tries + 1)); done
        rm -f "$pidfile"
    fi
}
trap 'release; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

case "$work" in *,*) echo "dnslab: $work: a comma would break qemu's options" >&2; exit 1 ;; esac
grep -q '^ssh-' "$pub" || { echo "dnslab: $pub is not an SSH public key" >&2; exit 1; }

echo "dnslab: copy of $image"
cp "$image" "$copy"
: > "$raw"
qemu-storage-daemon --blockdev "driver=file,node-name=file,filename=$copy" \
    --blockdev driver=qcow2,node-name=disk,file=file \
    --export "type=fuse,id=disk,node-name=disk,mountpoint=$raw,writable=on" \
    --pidfile "$pidfile" --daemonize
start=$(sfdisk -d "$raw" | sed -n 's/^[^:]*1 : start= *\([0-9]*\),.*/\1/p')
[ -n "$start" ] || { echo "dnslab: no first partition in $image" >&2; exit 1; }
loop=$(losetup --show -f -o "$((start * 512))" "$raw")
mkdir "$mnt"
mount "$loop" "$mnt"
[ -s "$mnt/etc/dnslab/image-release" ] || { echo "dnslab: $image is not a dnslab lab image" >&2; exit 1; }
if grep -q '^vagrant:' "$mnt/etc/passwd"; then
    echo "dnslab: $image already has a vagrant user (only the box may have one)" >&2
    exit 1
fi

echo "dnslab: vagrant user, Vagrant's insecure key, passwordless sudo"
useradd --root "$mnt" --create-home --shell /bin/bash vagrant
ids=$(awk -F: '$1 == "vagrant" { print $3 ":" $4 }' "$mnt/etc/passwd")
install -d -m 0700 -o "${ids%:*}" -g "${ids#*:}" "$mnt/home/vagrant/.ssh"
install -m 0600 -o "${ids%:*}" -g "${ids#*:}" "$pub" "$mnt/home/vagrant/.ssh/authorized_keys"
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$mnt/etc/sudoers.d/vagrant"
chmod 0440 "$mnt/etc/sudoers.d/vagrant"
release

qemu-img check -q "$copy"
mv "$copy" "$out"
echo "dnslab: box disk $out"
