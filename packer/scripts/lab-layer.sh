#!/bin/sh
# Packer provisioner: the dnslab lab layer on top of the base image (runs as root in the guest).
# Environment: DNSLAB_IMAGE_RELEASE (the image's input hash).
set -eu
: "${DNSLAB_IMAGE_RELEASE:?set by packer}"

install -d -m 0755 /etc/dnslab /var/lib/dnslab /etc/dnslab/unbound /etc/dnslab/keepalived

# Sysctl defaults for a director: deploy writes the lab's own values on top (lab.toml [sysctl]).
cat > /etc/sysctl.d/60-dnslab.conf <<'CONF'
# dnslab image defaults; deploy writes /etc/sysctl.d/70-dnslab-lab.conf from lab.toml.
net.ipv4.ip_forward = 1
net.ipv4.conf.all.rp_filter = 0
net.ipv4.conf.default.rp_filter = 0
CONF

# The stock units stay off: the stock unbound is a recursive resolver and must never run.
for unit in unbound.service unbound-resolvconf.service keepalived.service; do
    systemctl mask "$unit" >/dev/null
done

# Sanity: what the lab needs is in place.
for tool in unbound unbound-checkconf keepalived ipvsadm iptables ip conntrack dnsperf dig nslookup; do
    command -v "$tool" >/dev/null || { echo "dnslab: $tool missing from the image" >&2; exit 1; }
done
/opt/dnslab/venv/bin/python -c 'import locust, dns.message' >/dev/null
for mod in ip_vs ip_vs_rr 8021q ipvlan nf_conntrack xt_ipvs; do
    modprobe "$mod"
done

echo "$DNSLAB_IMAGE_RELEASE" > /etc/dnslab/image-release
rm -f /root/.ssh/authorized_keys
rm -f /etc/ssh/ssh_host_*
sync
echo "dnslab: lab layer $DNSLAB_IMAGE_RELEASE"
