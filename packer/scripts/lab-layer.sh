#!/bin/sh
# Packer provisioner: the dnslab lab layer on top of the base image (runs as root in the guest).
# Environment: DNSLAB_IMAGE_RELEASE (the image's input hash).
set -eu
: "${DNSLAB_IMAGE_RELEASE:?set by packer}"

install -d -m 0755 /etc/dnslab /var/lib/dnslab /etc/dnslab/unbound /etc/dnslab/keepalived

# Image-level sysctls only. The stack's own (ip_forward, net.ipv4.vs.*, ...) come from lab.toml
# [sysctl]: deploy writes them to /etc/sysctl.d/60-dnslab.conf, so experiments see no hidden defaults.
cat > /etc/sysctl.d/50-dnslab-image.conf <<'CONF'
# dnslab image: keep kernel info messages (e.g. IPVS) off the serial console once booted.
kernel.printk = 4 4 1 7
CONF

# Sanity: what the lab needs is in place, and the stock unbound (a recursor) and keepalived stay masked.
for unit in unbound.service keepalived.service; do
    [ "$(systemctl is-enabled "$unit" 2>/dev/null)" = masked ] || { echo "dnslab: $unit not masked" >&2; exit 1; }
done
for tool in unbound unbound-checkconf keepalived ipvsadm iptables ip conntrack dnsperf dig nslookup; do
    command -v "$tool" >/dev/null || { echo "dnslab: $tool missing from the image" >&2; exit 1; }
done
/opt/dnslab/venv/bin/python -c 'import locust, dns.message' >/dev/null
for mod in ip_vs ip_vs_rr 8021q ipvlan nf_conntrack xt_ipvs; do
    modprobe "$mod"
done

# The compose runtime's container image: the tarball of Debian packages (lab/image/build.py)
# imported once here, so no lab VM needs a registry. Docker stays disabled at boot.
tarball=/var/lib/dnslab/images/stack.tar
release=$(. /etc/os-release && echo "$VERSION_CODENAME")
if [ -f "$tarball" ]; then
    systemctl start docker.service
    docker import --change 'CMD ["/bin/sh"]' "$tarball" "dnslab/stack:$release"
    rm -f "$tarball"
fi
systemctl start docker.service
docker image inspect --format 'dnslab: container image {{.RepoTags}} {{.Size}} bytes' "dnslab/stack:$release"
systemctl stop docker.service docker.socket containerd.service
command -v docker >/dev/null || { echo "dnslab: docker missing from the image" >&2; exit 1; }
# Compose v1 (bookworm: docker-compose) or v2 (trixie: the `docker compose` plugin, maybe also as docker-compose)
docker-compose version >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 \
    || { echo "dnslab: neither docker-compose nor docker compose in the image" >&2; exit 1; }

# Root is reached only with the lab's own key: no vagrant user (only the Vagrant box adds one).
if getent passwd vagrant >/dev/null || [ -e /etc/sudoers.d/vagrant ]; then
    echo "dnslab: the lab image must have no vagrant user" >&2; exit 1
fi

echo "$DNSLAB_IMAGE_RELEASE" > /etc/dnslab/image-release
rm -f /root/.ssh/authorized_keys
rm -f /etc/ssh/ssh_host_*
sync
echo "dnslab: lab layer $DNSLAB_IMAGE_RELEASE"
