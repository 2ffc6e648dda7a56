"""Start Locust ahead of its run: `python prestart.py --go FILE --netns NAME --wait-s S --
LOCUST-ARGUMENTS...`.

Importing Locust takes about 7 s in the TCG lab VM, as long as a run's deploy and health check. This
process does that import while the lab is being prepared. It then waits for the go file, enters the
network namespace (`/run/netns/NAME`, as `ip netns exec` would; the namespace may have been rebuilt
meanwhile) and runs Locust's own `main` with the arguments, which loads the locustfile (and the
loadtest package) as deployed by then. When the go file does not come within the wait, it exits
without sending anything, so a caller that died leaves nothing running.

A standalone script (the standard library and Locust only): the runner uploads it into the run's
directory, so it works before the lab's first deploy.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import time

CLONE_NEWNET = 0x40000000
POLL_S = 0.05


def enter_netns(name: str) -> None:
    """Move this (single-threaded) process into network namespace `name`."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if hasattr(os, "setns"):  # Python >= 3.12
            os.setns(fd, CLONE_NEWNET)
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into network namespace {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def wait_for(path: str, wait_s: float) -> bool:
    """True once `path` exists, False when `wait_s` passed first."""
    deadline = time.monotonic() + wait_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="prestart.py", description=__doc__.split("\n")[0])
    parser.add_argument("--go", required=True, help="the file whose appearance starts the load")
    parser.add_argument("--netns", default="", help="the network namespace to run in (default: this one)")
    parser.add_argument("--wait-s", type=float, required=True, help="how long to wait for the go file")
    if "--" not in argv:
        parser.error("Locust's arguments follow `--`")
    split = argv.index("--")
    return parser.parse_args(argv[:split]), argv[split + 1:]


def main(argv: list[str] | None = None) -> int:
    args, locust_args = parse(sys.argv[1:] if argv is None else argv)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # started in the background of a non-interactive shell (as the runner does): SIGINT must still
        # stop the wait, as it stops the run (loadtest/process.py does the same at Locust's init)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    import locust.main  # the slow part: gevent's monkey patching, Flask, ...

    if not wait_for(args.go, args.wait_s):
        print(f"prestart: no {args.go} within {args.wait_s:g} s; not starting the load", file=sys.stderr)
        return 0
    if args.netns:
        enter_netns(args.netns)
    sys.argv = ["locust", *locust_args]
    return locust.main.main()


if __name__ == "__main__":
    sys.exit(main())
