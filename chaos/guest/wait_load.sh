# Wait until the load generator has written its first records; print ready, exited or timeout.
# Usage: wait_load.sh RUN_DIR TENTHS  (RUN_DIR holds records/ and load.pid; polls every 0.1 s)
dir=$1 tenths=$2
pidfile=$dir/load.pid  # written by the detached shell that starts the load: may lag a little
for _ in $(seq "$tenths"); do
    if [ -n "$(ls "$dir/records/" 2>/dev/null)" ]; then echo ready; exit 0; fi
    if [ -s "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo exited; exit 0; fi
    sleep 0.1
done
echo timeout
