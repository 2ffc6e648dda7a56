#!/bin/sh
# mmdebstrap customize hook: turn the Debian rootfs at $1 into the dnslab guest.
# Environment (set by lab/image/build.py): DNSLAB_PIP_CERT (CA bundle for pip, optional),
# DNSLAB_PIP_PACKAGES (pip requirement specifiers for /opt/dnslab/venv). The compose runtime's
# container image (an mmdebstrap tarball of container-packages.txt) is built alongside by
# lab/image/build.py. No `vagrant` user here: only the Vagrant box has one
# (packer/box/vagrant-disk.sh), so root is reached only with the lab's own key.
set -eu
root="$1"
files="$(dirname "$0")/files"
in_root() { chroot "$root" "$@"; }

echo "dnslab: hostname, fstab, network"
echo dnslab > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdnslab\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
# fsck pass 0: a lab VM's root is a fresh overlay each boot, and fsck costs seconds under TCG.
echo 'LABEL=dnslab-root / ext4 errors=remount-ro 0 0' > "$root/etc/fstab"
install -D -m 0644 "$files/20-eth0.network" "$root/etc/systemd/network/20-eth0.network"
in_root systemctl enable systemd-networkd.service

echo "dnslab: ssh (key only), keys from qemu fw_cfg at boot, fresh host keys per VM"
install -D -m 0644 "$files/sshd-dnslab.conf" "$root/etc/ssh/sshd_config.d/dnslab.conf"
install -D -m 0755 "$files/dnslab-ssh-keys" "$root/usr/local/sbin/dnslab-ssh-keys"
install -D -m 0644 "$files/dnslab-ssh-keys.service" "$root/etc/systemd/system/dnslab-ssh-keys.service"
in_root systemctl enable dnslab-ssh-keys.service ssh.service
rm -f "$root"/etc/ssh/ssh_host_*

echo "dnslab: kernel modules, serial console"
install -D -m 0644 "$files/modules-load.conf" "$root/etc/modules-load.d/dnslab.conf"
install -D -m 0644 "$files/grub-default" "$root/etc/default/grub.d/dnslab.cfg"

echo "dnslab: the stock unbound (a recursor) and keepalived never start on their own"
for unit in unbound.service unbound-resolvconf.service keepalived.service; do
    in_root systemctl disable "$unit" >/dev/null 2>&1 || true
    in_root systemctl mask "$unit"
done
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    in_root systemctl disable "$unit" >/dev/null 2>&1 || true
done
in_root systemctl mask e2scrub_reap.service  # 20 s of boot under TCG, for nothing in a lab VM

echo "dnslab: Python venv /opt/dnslab/venv with $DNSLAB_PIP_PACKAGES"
in_root python3 -m venv /opt/dnslab/venv
cert_opt=""
if [ -n "${DNSLAB_PIP_CERT:-}" ]; then
    cp "$DNSLAB_PIP_CERT" "$root/tmp/dnslab-pip-ca.crt"
    cert_opt="--cert /tmp/dnslab-pip-ca.crt"
fi
# A clean environment: pip keeps its default index and none of the host's pip settings.
# shellcheck disable=SC2086
in_root env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 PIP_CONFIG_FILE=/dev/null \
    /opt/dnslab/venv/bin/pip install --no-cache-dir --disable-pip-version-check -q $cert_opt \
    $DNSLAB_PIP_PACKAGES
rm -f "$root/tmp/dnslab-pip-ca.crt"

echo "dnslab: Docker and containerd never start on their own (only the compose runtime's deploy starts them)"
for unit in docker.service docker.socket containerd.service; do
    in_root systemctl disable "$unit" >/dev/null 2>&1 || true
done

echo "dnslab: no upstream resolver in the guest; trim"
printf '# dnslab: the guest has no upstream resolver (nothing may recurse to the internet)\n' > "$root/etc/resolv.conf"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/root/.cache
