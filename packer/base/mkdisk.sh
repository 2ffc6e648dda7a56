#!/bin/sh
# Stage 2 of the dnslab image: a bootable disk from the rootfs directory mmdebstrap made.
#   mkdisk.sh ROOTFS OUTDIR SIZE_MIB
# Writes OUTDIR/base.qcow2 (MBR, one ext4 partition labelled dnslab-root, GRUB on the MBR) and
# OUTDIR/vmlinuz, OUTDIR/initrd.img for direct-kernel boot. Needs root (loop device for GRUB).
set -eu
rootfs="$1" out="$2" size_mib="$3"
label=dnslab-root
raw="$out/base.raw"
mnt="$out/mnt"
loop=""

release() {
    for m in dev/pts dev proc sys ""; do
        if mountpoint -q "$mnt/$m" 2>/dev/null; then umount "$mnt/$m"; fi
    done
    if [ -n "$loop" ]; then losetup -d "$loop" 2>/dev/null || true; loop=""; fi
    rmdir "$mnt" 2>/dev/null || true
}
trap 'release; rm -f "$raw"' EXIT

echo "dnslab: partition table and ext4 filesystem ($size_mib MiB)"
truncate -s "${size_mib}M" "$raw"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$raw"
mkfs.ext4 -q -F -L "$label" -E offset=1048576 -d "$rootfs" "$raw" "$(( (size_mib - 1) * 1024 ))k"

echo "dnslab: GRUB on the MBR"
loop=$(losetup --show -f "$raw")
part="${loop}p1"
want=$(( (size_mib - 1) * 2048 ))  # partition size in 512-byte sectors
sizefile="/sys/block/${loop#/dev/}/${part#/dev/}/size"
tries=0
# A reused loop device may still carry a stale partition: update it, add it if missing, and retry
# until the kernel reports the size this disk's table says.
until [ -b "$part" ] && [ "$(cat "$sizefile" 2>/dev/null)" = "$want" ]; do
    partx -u "$loop" 2>/dev/null || partx -a "$loop" 2>/dev/null || true
    tries=$((tries + 1))
    [ "$tries" -lt 20 ] || { echo "dnslab: $part never appeared with $want sectors (partx)" >&2; exit 1; }
    sleep 0.5
done
mkdir -p "$mnt"
mount "$part" "$mnt"
mount --bind /dev "$mnt/dev"
mount --bind /dev/pts "$mnt/dev/pts"
mount -t proc proc "$mnt/proc"
mount -t sysfs sys "$mnt/sys"
chroot "$mnt" grub-install --target=i386-pc --modules="part_msdos ext2" "$loop"
kernel=$(cd "$mnt/boot" && ls vmlinuz-* | sort -V | tail -n 1)
version=${kernel#vmlinuz-}
cat > "$mnt/boot/grub/grub.cfg" <<CFG
# dnslab: written by packer/base/mkdisk.sh (update-grub in the guest rewrites it from /etc/default/grub)
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
set default=0
search --no-floppy --label --set=root $label
menuentry 'Debian GNU/Linux (dnslab)' {
    linux /boot/vmlinuz-$version root=LABEL=$label ro console=ttyS0,115200 net.ifnames=0 biosdevname=0
    initrd /boot/initrd.img-$version
}
CFG
cp "$mnt/boot/vmlinuz-$version" "$out/vmlinuz"
cp "$mnt/boot/initrd.img-$version" "$out/initrd.img"
chmod 0644 "$out/vmlinuz" "$out/initrd.img"
release

echo "dnslab: qcow2 (compressed)"
qemu-img convert -c -O qcow2 "$raw" "$out/base.qcow2"
