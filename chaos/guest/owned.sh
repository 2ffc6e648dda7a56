# Exit 0 when the process in PIDFILE is alive and its command line contains OWNER (its run directory).
# Usage: owned.sh PIDFILE OWNER
pid=$(cat "$1" 2>/dev/null) || exit 1
case "$pid" in ''|*[!0-9]*) exit 1;; esac
kill -0 "$pid" 2>/dev/null || exit 1
tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"
