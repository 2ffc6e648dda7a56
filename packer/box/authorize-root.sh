#!/bin/sh
# Vagrant provisioner (the repo's Vagrantfile runs it once, as root, at the first `vagrant up`):
# root's authorized_keys becomes the lab's own key, the one the qemu provider hands its VM, so every
# dnslab task logs in as root, whichever provider brought the lab up.
#   authorize-root.sh 'ssh-ed25519 AAAA... dnslab'
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
