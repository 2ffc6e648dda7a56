# Stop guest probes together: for each PIDFILE SIGNAL TENTHS, signal the process in PIDFILE, wait up
# to TENTHS tenths of a second for it to exit, then SIGKILL it and print `late PIDFILE`.
# Only a process whose command line contains OWNER (its run directory) is signalled: after a reboot
# of the guest, the PID in an old pidfile may belong to anything. An empty OWNER skips that check.
# Usage: stop.sh OWNER PIDFILE SIGNAL TENTHS [PIDFILE SIGNAL TENTHS ...]; exit 1 when one was late.
owner=$1
shift
stop_one() {
    pid=$(cat "$1" 2>/dev/null) || return 0
    case "$pid" in ''|*[!0-9]*) return 0;; esac
    kill -0 "$pid" 2>/dev/null || return 0
    if [ -n "$owner" ]; then
        tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$owner" || return 0
    fi
    kill "-$2" "$pid" 2>/dev/null || return 0
    for _ in $(seq "$3"); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    echo "late $1"
}
while [ $# -ge 3 ]; do
    stop_one "$1" "$2" "$3" &
    shift 3
done
wait
