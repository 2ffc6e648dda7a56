#!/bin/sh
# Vagrant provisioner (the repo's Vagrantfile runs it once, as root, at the first `vagrant up`):
# root's authorized_keys becomes the lab's own key, the one the qemu provider hands its VM, so every
# dnslab task logs in as root, whichever provider brought the lab up. With a second argument, the
# lab's SSH host key (uploaded there by the Vagrantfile's file provisioner) replaces the VM's own
# ed25519 host key, so dnslab can check that it reaches this VM (lab/hostkeys.py).
#   authorize-root.sh 'ssh-ed25519 AAAA... dnslab' [/home/vagrant/.dnslab-host-key]
set -eu
key="$1"
case "$key" in
    ssh-*|ecdsa-*) ;;
    *) echo "dnslab: not an SSH public key: $key" >&2; exit 1 ;;
esac
install -d -m 0700 /root/.ssh
printf '%s\n' "$key" > /root/.ssh/authorized_keys.new
chmod 0600 /root/.ssh/authorized_keys.new
mv /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys
echo "dnslab: root logs in with the lab's key"
host_key="${2:-}"
[ -n "$host_key" ] || exit 0
chmod 0600 "$host_key"  # ssh-keygen refuses a private key others may read
if ! ssh-keygen -y -f "$host_key" > /etc/ssh/ssh_host_ed25519_key.pub.new; then
    echo "dnslab: not an SSH private key: $host_key" >&2
    rm -f /etc/ssh/ssh_host_ed25519_key.pub.new
    exit 1
fi
install -m 0600 -o root -g root "$host_key" /etc/ssh/ssh_host_ed25519_key.new
mv /etc/ssh/ssh_host_ed25519_key.new /etc/ssh/ssh_host_ed25519_key
mv /etc/ssh/ssh_host_ed25519_key.pub.new /etc/ssh/ssh_host_ed25519_key.pub
rm -f "$host_key"
systemctl reload ssh 2>/dev/null || systemctl restart ssh
echo "dnslab: sshd presents the lab's pinned host key"
