"""A TCP forwarder from a host loopback port into a network namespace.

`python -m lab.providers.vagrant.netns_forward NETNS_PATH TARGET_HOST TARGET_PORT` binds 127.0.0.1 on a
free port in the host namespace, prints that port on stdout, then moves itself into NETNS_PATH: every
accepted connection is relayed to TARGET_HOST:TARGET_PORT from inside the namespace. The target address
(libvirt's private network) thus never appears on the host; the host only talks to loopback.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
CHUNK = 65536


def enter_netns(path: str) -> None:
    """Move the calling process (it must have no other threads yet) into the namespace at `path`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                sock.shutdown(how)


def _relay(client: socket.socket, target: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(target, timeout=10)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def serve(listener: socket.socket, target: tuple[str, int]) -> None:
    """Accept forever; relay each connection to `target` in its own thread."""
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_relay, args=(client, target), daemon=True).start()


def main(argv: list[str]) -> int:
    netns_path, host, port = argv
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    enter_netns(netns_path)
    print(listener.getsockname()[1], flush=True)
    serve(listener, (host, int(port)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
