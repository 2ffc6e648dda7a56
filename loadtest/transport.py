"""The engine's sockets: non-blocking UDP sockets and one pipelined TCP connection on one epoll.

`Transport` is a part of `loadtest.engine.Engine` (a mixin; its state is set in `Engine.__init__`).
A single gevent io watcher on the epoll wakes `_on_ready` inside the hub, which reads a bounded
number of replies per wakeup and hands each to `Engine._answer`. An ICMP error on a connected UDP
socket fails the query waiting on it. TCP (raw client only) is one length-prefixed, pipelined
connection per user, reconnected by the next TCP query after a failure.
"""

from __future__ import annotations

import _socket
import errno

from loadtest.inflight import CLASS, PORT, QID, SOCK, Lookup
from loadtest.records import ERROR, NO_RCODE

EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x001, 0x004, 0x008, 0x010
READS_PER_WAKEUP = 256


class Transport:
    """Opens, watches and closes a user's sockets; reads replies off them."""

    def _open_udp(self, target: tuple[str, int] | None, owner) -> tuple:
        """A non-blocking UDP socket, connected to `target` (None: bound, unconnected); (socket, port)."""
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            if target is None:
                sock.bind(("0.0.0.0", 0))
            else:
                sock.connect(target)
        except OSError:
            sock.close()
            raise
        fd = sock.fileno()
        self._socks[fd] = [sock, owner, target is not None]
        self._ep.register(fd, EPOLLIN)
        return sock, sock.getsockname()[1]

    def _drop_socket(self, sock) -> None:
        fd = sock.fileno()
        if fd >= 0 and self._socks.pop(fd, None) is not None:
            sock.close()

    def _on_ready(self) -> None:
        budget = READS_PER_WAKEUP
        socks = self._socks
        for fd, events in self._ep.poll(0, 64):
            if fd == self._tcp_fd:
                self._on_tcp(events)
                continue
            slot = socks.get(fd)
            if slot is None:
                continue
            sock, connected = slot[0], slot[2]
            while budget > 0:
                budget -= 1
                try:
                    if connected:
                        reply, source = sock.recv(4096), None
                    else:
                        reply, source = sock.recvfrom(4096)
                except BlockingIOError:
                    break
                except OSError:  # e.g. ConnectionRefusedError: ICMP port unreachable
                    self._refused(sock, slot[1])  # its owner now (a glibc retry may have changed it)
                    break
                self._answer(reply, sock, source)
                if socks.get(fd) is not slot:  # closed when its lookup ended
                    break
            if budget <= 0:
                break
        if self._closed_model:
            self.fill()

    def _pending_on(self, sock) -> list | None:
        """The oldest pending query sent on `sock`."""
        for pending in self._classes:
            for entry in pending.values():
                if entry[SOCK] is sock:
                    return entry
        return None

    def _refused(self, sock, owner) -> None:
        """An ICMP error on a connected UDP socket: the query waiting on it failed (for a shared
        socket, its oldest). An error on a glibc socket it is not waiting on is dropped."""
        if owner is None:
            entry = self._pending_on(sock)
        elif isinstance(owner, Lookup):
            entry = owner.entry if owner.entry is not None and owner.entry[SOCK] is sock else None
        else:
            entry = owner
        if entry is not None and self._classes[entry[CLASS]].get(entry[QID]) is entry:
            del self._classes[entry[CLASS]][entry[QID]]
            self._finish(entry, ERROR, NO_RCODE, "")

    # -- TCP --------------------------------------------------------------------------------------

    def _send_tcp(self, packet: bytes, entry: list) -> None:
        if self._tcp is None:
            self._connect_tcp()
        entry[SOCK] = self._tcp
        entry[PORT] = self._tcp_port
        self._tcp_out += len(packet).to_bytes(2, "big") + packet
        if self._tcp_connected:
            self._flush_tcp()

    def _connect_tcp(self) -> None:
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        code = sock.connect_ex(self._targets[0])
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, errno.errorcode.get(code, "connect failed"))
        self._tcp, self._tcp_fd = sock, sock.fileno()
        self._tcp_port = sock.getsockname()[1]
        self._tcp_connected = False
        self._tcp_out.clear()
        self._tcp_in.clear()
        self._ep.register(self._tcp_fd, EPOLLIN | EPOLLOUT)

    def _flush_tcp(self) -> None:
        sent = self._tcp.send(self._tcp_out)
        del self._tcp_out[:sent]
        self._ep.modify(self._tcp_fd, EPOLLIN | (EPOLLOUT if self._tcp_out else 0))

    def _on_tcp(self, events: int) -> None:
        sock = self._tcp
        try:
            if not self._tcp_connected and events & (EPOLLOUT | EPOLLERR | EPOLLHUP):
                code = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
                if code:
                    raise OSError(code, "connect failed")
                self._tcp_connected = True
            if events & EPOLLOUT:
                self._flush_tcp()
            if events & (EPOLLIN | EPOLLHUP | EPOLLERR):
                data = sock.recv(65536)
                if not data:
                    raise ConnectionResetError("closed by the server")
                self._tcp_in += data
                self._read_frames(sock)
        except BlockingIOError:
            return
        except OSError:
            self._tcp_failed()

    def _read_frames(self, sock) -> None:
        buffer = self._tcp_in
        offset = 0
        while len(buffer) - offset >= 2:
            size = int.from_bytes(buffer[offset : offset + 2], "big")
            if len(buffer) - offset - 2 < size:
                break
            self._answer(bytes(buffer[offset + 2 : offset + 2 + size]), sock)
            offset += 2 + size
        del buffer[:offset]

    def _tcp_failed(self) -> None:
        """The TCP connection broke: its queries failed; the next TCP query reconnects."""
        sock = self._tcp
        lost = [entry for pending in self._classes for entry in pending.values() if entry[SOCK] is sock]
        for entry in lost:
            del self._classes[entry[CLASS]][entry[QID]]
            self._finish(entry, ERROR, NO_RCODE, "")
        self._ep.unregister(self._tcp_fd)
        sock.close()
        self._tcp, self._tcp_fd, self._tcp_connected = None, -1, False
