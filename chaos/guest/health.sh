# The lab's health in one round trip: every resolver asked `who.lab.test TXT` in parallel (a line
# `NAME ANSWER` each), then `@@fault NAME` for each check that fails, then `@@ipvs` and the director's
# /proc/net/ip_vs. A check is a bash snippet of dnslab's own (lab.leftovers.health_checks).
# Usage: health.sh DIRECTOR_NETNS RESOLVER ADDRESS [RESOLVER ADDRESS ...] -- [NAME CHECK ...]
# (an empty DIRECTOR_NETNS: the root namespace)
director=$1
shift
tmp=$(mktemp -d /tmp/dnslab-health.XXXXXX) || exit 1
names=()
while [ $# -ge 2 ] && [ "$1" != -- ]; do
    (echo "$1" "$(ip netns exec "$1" dig +time=1 +tries=2 +short "@$2" who.lab.test TXT)" > "$tmp/$1") &
    names+=("$1")
    shift 2
done
[ "${1:-}" = -- ] && shift
# The checks run alongside the queries, each in a subshell of this one (a fork, no exec: a fresh bash
# costs ~0.1 s under TCG), their faults collected in order.
n=0
while [ $# -ge 2 ]; do
    n=$((n + 1))
    ( (eval "$2") >/dev/null 2>&1 || echo "@@fault $1" > "$tmp/fault.$n" ) &
    shift 2
done
wait
for name in "${names[@]}"; do cat "$tmp/$name"; done
for ((i = 1; i <= n; i++)); do [ -f "$tmp/fault.$i" ] && cat "$tmp/fault.$i"; done
rm -rf "$tmp"
echo @@ipvs
if [ -n "$director" ]; then ip netns exec "$director" cat /proc/net/ip_vs; else cat /proc/net/ip_vs; fi
