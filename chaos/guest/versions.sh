# The tool and kernel versions a run records in meta.json, one per line: the kernel, Unbound,
# Keepalived, ipvsadm, Locust (an empty line for a tool that is missing).
# Usage: versions.sh GUEST_VENV
venv=$1
uname -r
unbound -V 2>&1 | head -1
keepalived --version 2>&1 | head -1
ipvsadm --version 2>&1 | head -1
ls -d "$venv"/lib/python3*/site-packages/locust-*.dist-info 2>/dev/null \
    | sed 's/.*locust-\(.*\)\.dist-info/locust \1/' | head -1
