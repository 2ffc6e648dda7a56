# The fault and rollback actions of chaos/actions.py, run as root in the lab host.
# Usage: actions.sh ACTION ARG...  Every value arrives as a positional parameter, never as code.
# Each action prints the instant it acts first (ns of the guest's CLOCK_REALTIME, the clock of the
# query records), then what it read (a PID, previous values); a failure goes to stderr, exit non-zero.
# PIDS is where a unit's main PID comes from: `systemd` (its MainPID), `docker` (UNIT is a container:
# its process as the host sees it), or a directory holding UNIT.pid (local tests stand in for systemd
# that way). Under docker a SIGSTOP is `docker pause` (the cgroup freezer: the hang case), and starting
# a container again names its new network namespace as before (`ip netns attach`, the resolver's name).
set -f  # route words are never globbed

now() { echo "${EPOCHREALTIME//[!0-9]/}000"; }  # from bash itself, right before the act: no fork between
stamp() { date +%s%N; }

main_pid() {  # PIDS UNIT
    case "$1" in
        systemd) systemctl show -p MainPID --value "$2";;
        docker) docker inspect -f '{{.State.Pid}}' "$2" 2>/dev/null;;
        *) cat "$1/$2.pid" 2>/dev/null;;
    esac
}

netns_attach() {  # NETNS PID: NETNS names the network namespace of process PID (a container's)
    [ "$(stat -L -c %i "/run/netns/$1" 2>/dev/null)" = "$(stat -L -c %i "/proc/$2/ns/net")" ] && return
    ip netns delete "$1" 2>/dev/null
    ip netns attach "$1" "$2"
}

container_ensure() {  # CONTAINER NETNS: unpaused, running, its namespace named
    # One `docker inspect` when it runs already (each Docker CLI call takes ~1 s under TCG and load, the
    # daemons at CPU weight 1): a restart policy has usually brought a crashed resolver back by now.
    # Sets started_by (policy: it was running, runner: this started it) and started_at (State.StartedAt).
    state=$(docker inspect -f '{{.State.Paused}} {{.State.Running}} {{.State.Pid}} {{.State.StartedAt}}' "$1") \
        || return
    read -r paused running pid started_at <<<"$state"
    started_by=policy
    if [ "$paused" = true ]; then docker unpause "$1" >/dev/null || return; fi
    if [ "$running" != true ]; then
        started_by=runner
        docker start "$1" >/dev/null || return
        state=$(docker inspect -f '{{.State.Pid}} {{.State.StartedAt}}' "$1") || return
        read -r pid started_at <<<"$state"
    fi
    [ -z "$2" ] || netns_attach "$2" "$pid"
}

running_pid() {  # PIDS UNIT: the main PID, or a message and exit 3
    pid=$(main_pid "$1" "$2")
    case "$pid" in ''|0|*[!0-9]*) echo "no running process for $2" >&2; exit 3;; esac
}

in_ns() {  # NETNS COMMAND...: in that network namespace, or the root one when NETNS is empty
    ns=$1
    shift
    if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi
}

action=$1
shift
case "$action" in
    signal)  # PIDS UNIT SIGNAL: kill, terminate, stop a resolver; kill or reload Keepalived
        running_pid "$1" "$2"
        if [ "$1" = docker ] && [ "$3" = STOP ]; then
            # the freeze is in force when `docker pause` returns; its CLI and API take ~1 s under TCG
            docker pause "$2" >/dev/null && now
        else
            now
            kill "-$3" "$pid"
        fi
        echo "$pid";;
    cont)  # PIDS UNIT: SIGCONT its main process (docker: unpause it), if any
        pid=$(main_pid "$1" "$2")
        stamp
        if [ "$1" = docker ]; then
            [ "$(docker inspect -f '{{.State.Paused}}' "$2")" != true ] || docker unpause "$2" >/dev/null
        elif [ "${pid:-0}" -gt 0 ] 2>/dev/null; then kill -CONT "$pid"; fi
        true;;
    ensure)  # PIDS UNIT [NETNS]: not stopped, and active (restarted when it is not)
        if [ "$1" = docker ]; then stamp; container_ensure "$2" "${3:-}"; exit; fi
        pid=$(main_pid "$1" "$2")
        stamp
        if [ "${pid:-0}" -gt 0 ] 2>/dev/null; then kill -CONT "$pid"; fi
        systemctl is-active -q "$2" || systemctl restart "$2";;
    ensure_active)  # PIDS UNIT
        stamp
        if [ "$1" = docker ]; then container_ensure "$2" ""; exit; fi
        systemctl is-active -q "$2" || systemctl restart "$2";;
    restart)  # PIDS UNIT [NETNS]
        stamp
        # Under docker every experiment restarts a crashed resolver: `docker start` it, or leave it to
        # its restart policy when that brought it back already (a `docker restart` would crash it again).
        # Then prints who started it and when (ns): `policy 1796...` or `runner 1796...`.
        if [ "$1" = docker ]; then
            container_ensure "$2" "${3:-}" || exit
            echo "$started_by $(date -d "$started_at" +%s%N)"
            exit
        fi
        systemctl restart "$2";;
    unit_stop)  # PIDS UNIT
        now
        if [ "$1" = docker ]; then docker stop "$2" >/dev/null; exit; fi
        systemctl stop "$2";;
    link_down)  # NETNS DEV
        stamp
        ip -n "$1" link set "$2" down;;
    link_up)  # NETNS DEV [ROUTE...]: each ROUTE the words of one route (checked by chaos.values)
        ns=$1 dev=$2
        shift 2
        stamp
        ip -n "$ns" link set "$dev" up || exit
        for route in "$@"; do
            # shellcheck disable=SC2086 # a route is several words
            ip -n "$ns" route replace $route dev "$dev" || exit
        done;;
    netem)  # NETNS DEV NETEM-ARG...: e.g. delay 50ms 5ms loss 1%
        ns=$1 dev=$2
        shift 2
        stamp
        tc -n "$ns" qdisc replace dev "$dev" root netem "$@";;
    netem_clear)  # NETNS DEV
        stamp
        tc -n "$1" qdisc del dev "$2" root 2>/dev/null || true;;
    sysctl)  # NETNS NAME VALUE: prints the previous value
        prev=$(in_ns "$1" sysctl -n "$2")
        stamp
        echo "$prev"
        in_ns "$1" sysctl -q -w "$2=$3";;
    udp_timeout)  # NETNS SECONDS: prints the tcp, tcpfin and udp timeouts before
        ns=$1 udp=$2
        cur=$(in_ns "$ns" ipvsadm -L --timeout)
        stamp
        # shellcheck disable=SC2046 # "Timeout (tcp tcpfin udp): 900 120 300" -> three words
        set -- $(echo "$cur" | sed 's/.*: *//')
        echo "$1 $2 $3"
        in_ns "$ns" ipvsadm --set "$1" "$2" "$udp";;
    flush_conntrack)  # NETNS
        stamp
        in_ns "$1" conntrack -F 2>&1 | grep -v 'have been deleted' >&2
        true;;
    now)  # the instant only (an action whose work is done elsewhere)
        stamp;;
    *)
        echo "unknown action $action" >&2
        exit 2;;
esac
