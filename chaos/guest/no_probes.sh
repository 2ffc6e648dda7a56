# Exit 1 when a load, sampler or notify reader of a run still runs: a pidfile under RUNS/*/ whose live
# process's command line names that run's directory (after a reboot an old PID may be anything else).
# Usage: no_probes.sh RUNS [OWN]  (OWN: the asking run's own directory, whose load may already be
# importing Locust: loadtest/prestart.py)
own=${2:-}
for f in "$1"/*/load.pid "$1"/*/sampler.pid "$1"/*/notify.pid; do
    [ -f "$f" ] || continue
    [ -n "$own" ] && [ "${f%/*}" = "$own" ] && continue
    pid=$(cat "$f")
    case "$pid" in ''|*[!0-9]*) continue;; esac
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "${f%/*}/" && exit 1
done
exit 0
