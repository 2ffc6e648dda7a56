#!/bin/sh
# dnslab compose runtime: the host-network setup of the seed's fix-network.sh, run by the privileged
# init container on the host network before Keepalived starts. Idempotent: every step checks first.
# Its values come from the environment compose.yaml sets (rendered by lab/render/compose.py from a
# validated lab file); the sysctls come from the mounted sysctl file.
set -eu
: "${DNSLAB_PARENT:?}" "${DNSLAB_VLAN_LINK:?}" "${DNSLAB_VLAN_ID:?}" "${DNSLAB_HOST_LINK:?}"
: "${DNSLAB_HOST_CIDR:?}" "${DNSLAB_SUBNET:?}" "${DNSLAB_VIP:?}" "${DNSLAB_VIP_BY_VRRP:?}"
: "${DNSLAB_SYSCTL_FILE:?}" "${DNSLAB_NOTIFY_FIFO:?}"

# Keepalived's notify FIFO on the host's /run/dnslab, made before Keepalived so a restart reopens it.
mkdir -p "$(dirname "$DNSLAB_NOTIFY_FIFO")"
[ -p "$DNSLAB_NOTIFY_FIFO" ] || mkfifo -m 0600 "$DNSLAB_NOTIFY_FIFO"

# Removal on exit: each resolver's status file, 1 (not known to run) until the exit-watch service
# sees it answer; Keepalived 2.3 rejects a track_file whose file does not exist.
for f in ${DNSLAB_EXIT_FILES:-}; do
    mkdir -p "$(dirname "$f")"
    [ -e "$f" ] || echo 1 > "$f"
done

echo "sysctls from $DNSLAB_SYSCTL_FILE"
sysctl -q -p "$DNSLAB_SYSCTL_FILE"

# Docker's ipvlan driver makes the VLAN link when it creates dnsnet; make it here if it is missing.
if ip link show dev "$DNSLAB_VLAN_LINK" >/dev/null 2>&1; then
    echo "$DNSLAB_VLAN_LINK exists"
else
    echo "creating $DNSLAB_VLAN_LINK (VLAN $DNSLAB_VLAN_ID on $DNSLAB_PARENT)"
    ip link add link "$DNSLAB_PARENT" name "$DNSLAB_VLAN_LINK" type vlan id "$DNSLAB_VLAN_ID"
fi
ip link set dev "$DNSLAB_VLAN_LINK" up

# The host's own link into dnsnet: without it the host cannot reach the containers on the ipvlan.
if ip link show dev "$DNSLAB_HOST_LINK" >/dev/null 2>&1; then
    echo "$DNSLAB_HOST_LINK exists"
else
    echo "creating $DNSLAB_HOST_LINK (ipvlan l3 on $DNSLAB_VLAN_LINK)"
    ip link add "$DNSLAB_HOST_LINK" link "$DNSLAB_VLAN_LINK" type ipvlan mode l3
fi
ip addr replace "$DNSLAB_HOST_CIDR" dev "$DNSLAB_HOST_LINK"
ip link set dev "$DNSLAB_HOST_LINK" up

# The VIP, unless Keepalived's VRRP instance holds it.
if [ "$DNSLAB_VIP_BY_VRRP" = 0 ]; then
    ip addr replace "$DNSLAB_VIP/32" dev "$DNSLAB_VLAN_LINK"
fi

# IPVS only rewrites the destination: replies must come back to the VIP to be un-NATed.
if iptables -t nat -C POSTROUTING -s "$DNSLAB_SUBNET" -o "$DNSLAB_HOST_LINK" -j SNAT \
        --to-source "$DNSLAB_VIP" 2>/dev/null; then
    echo "SNAT rule exists"
else
    echo "adding the SNAT rule"
    iptables -t nat -A POSTROUTING -s "$DNSLAB_SUBNET" -o "$DNSLAB_HOST_LINK" -j SNAT --to-source "$DNSLAB_VIP"
fi
