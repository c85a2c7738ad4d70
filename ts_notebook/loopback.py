"""Listening sockets for ``http://localhost:PORT`` callbacks: 127.0.0.1 and, where the machine
has IPv6, [::1] — both or neither, so no other program on ::1 can catch a callback meant here.
"""

from __future__ import annotations

import errno
import socket

# Errors that mean "this machine has no IPv6 loopback", not "someone else holds the port".
NO_IPV6 = {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}


def _listen(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def bind_loopback(port: int) -> list[socket.socket]:
    """Listening sockets on ``port`` for 127.0.0.1 and ::1, or [] when the port is taken."""
    try:
        sockets = [_listen(socket.AF_INET, "127.0.0.1", port)]
    except OSError:
        return []
    try:
        sockets.append(_listen(socket.AF_INET6, "::1", port))
    except OSError as exc:
        if exc.errno not in NO_IPV6:  # another program listens on [::1]:port: not ours to use
            sockets[0].close()
            return []
    return sockets
